// Host-test support for disks: images with known content, the real NBD and QEMU tools
// (qemu-io, qemu-img, nbdcopy, nbdinfo) run against a family's exports, what a family's daemon
// holds, and `snowflock disk` run in-process.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { vi } from 'vitest';
import yargs from 'yargs';
import { diskCommand } from '../../../lib/cli/commands/disk.js';
import type { DiskFamily } from '../../../lib/disk/family.js';
import type { Psk } from '../../../lib/disk/psk.js';
import { QmpClient } from '../../../lib/disk/qmp.js';

const run = promisify(execFile);

export const haveTools = ['qemu-storage-daemon', 'qemu-img', 'qemu-io', 'nbdcopy', 'nbdinfo'].every((t) => spawnSync(t, ['--version']).status === 0);

/** Two "hosts" (state directories) under a fresh root, a scratch directory, and a parent's raw image of pattern(size, 1). */
export interface TestHosts {
  root: string;
  /** the parent's host */
  hostA: string;
  /** the clones' host */
  hostB: string;
  scratch: string;
  image: string;
}

export function testHosts(prefix: string, size: number): TestHosts {
  const root = mkdtempSync(`/tmp/${prefix}-`);
  const h = { root, hostA: join(root, 'a'), hostB: join(root, 'b'), scratch: join(root, 'scratch'), image: join(root, 'parent.raw') };
  mkdirSync(h.scratch);
  writeFileSync(h.image, pattern(size, 1));
  return h;
}

/** What a test leaves goes: its families shut down, any daemon still under `root` killed, `root` removed. */
export async function removeHosts(root: string | undefined, families: (DiskFamily | undefined)[]): Promise<void> {
  for (const f of families) await f?.shutdown().catch(() => undefined);
  for (const pid of root ? daemonsUnder(root) : []) process.kill(pid, 'SIGKILL');
  if (root) rmSync(root, { recursive: true, force: true });
}

/** `size` bytes of seeded pseudo-random content. */
export function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

/** `base` with each [offset, data] written over it: what a disk should read after those writes. */
export function withWrites(base: Buffer, writes: [number, Buffer][]): Buffer {
  const b = Buffer.from(base);
  for (const [off, d] of writes) d.copy(b, off);
  return b;
}

/** An export of a family's unix socket, as libnbd and QEMU name it. */
export const unixUri = (socket: string, name: string) => `nbd+unix:///${name}?socket=${socket}`;

/** A fork's TLS export, with the key in a file for libnbd (`tls-psk-file`). */
export function tlsUri(dir: string, host: string, port: number, name: string, psk: Psk): string {
  const file = join(dir, `psk-${psk.identity}-${psk.key.slice(0, 8)}`);
  writeFileSync(file, `${psk.identity}:${psk.key}\n`, { mode: 0o600 });
  return `nbds://${psk.identity}@${host}:${port}/${name}?tls-psk-file=${file}`;
}

/** qemu-io commands against a raw export; resolves with its output, rejects with it on failure. */
export async function qemuIo(uri: string, commands: string[], o: { readOnly?: boolean } = {}): Promise<string> {
  const args = [...(o.readOnly ? ['-r'] : []), '-f', 'raw', ...commands.flatMap((c) => ['-c', c]), uri];
  const r = await run('qemu-io', args).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`qemu-io ${commands.join('; ')}: ${(e.stderr ?? '') + (e.stdout ?? '') || e.message}`);
  });
  // qemu-io exits 0 even when a command fails: its output says so
  const out = r.stdout + r.stderr;
  if (/failed|error|Pattern verification/i.test(out)) throw new Error(`qemu-io ${commands.join('; ')}: ${out.trim()}`);
  return out;
}

/** Writes `data` at `offset` of a raw export (through a file and qemu-io's `write -s`). */
export async function writeAt(uri: string, offset: number, data: Buffer, scratch: string): Promise<void> {
  const f = join(scratch, `chunk-${offset}-${data.length}`);
  writeFileSync(f, data);
  await qemuIo(uri, [`write -s ${f} ${offset} ${data.length}`]);
}

/** The whole export, read with nbdcopy. */
export async function readAll(uri: string, scratch: string, tag: string): Promise<Buffer> {
  const f = join(scratch, `copy-${tag}.raw`);
  await run('nbdcopy', [uri, f]);
  return readFileSync(f);
}

export async function nbdinfo(uri: string): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await run('nbdinfo', ['--json', uri]);
    return { ok: true, out: r.stdout };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    return { ok: false, out: `${err.stderr ?? ''}${err.stdout ?? ''}` || err.message };
  }
}

/** `qemu-img compare` of two images; 0 identical, 1 different. */
export async function qemuImgCompare(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run('qemu-img', ['compare', ...args]);
    return { code: 0, out: r.stdout };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

/** Live qemu-storage-daemon processes whose command line mentions `dir`. */
export function daemonsUnder(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (cmd.startsWith('qemu-storage-daemon') && cmd.includes(dir) && !/\) Z /.test(stat)) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Every file and directory under `dir`, relative, sorted. */
export function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) walk(join(d, e.name), r);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** What a family's daemon holds (named nodes, exports, PSK objects), through its query monitor. */
export async function daemonGraph(querySocket: string): Promise<{ nodes: string[]; exports: string[]; objects: string[] }> {
  const q = await QmpClient.connect(querySocket);
  try {
    const nodes = (await q.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']).filter((n) => !n.startsWith('#'));
    const exports = (await q.execute<{ id: string }[]>('query-block-exports')).map((e) => e.id);
    const objects = (await q.execute<{ name: string }[]>('qom-list', { path: '/objects' })).map((o) => o.name).filter((n) => n.startsWith('psk'));
    return { nodes: nodes.sort(), exports: exports.sort(), objects: objects.sort() };
  } finally {
    q.close();
  }
}

/** `snowflock disk ...` in this process: what it prints and its exit code. */
export async function snowflockDisk(...args: string[]): Promise<{ out: string; code: number }> {
  let out = '';
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((c) => ((out += String(c)), true));
  const log = vi.spyOn(console, 'log').mockImplementation((...a) => void (out += a.join(' ') + '\n'));
  try {
    await diskCommand(yargs(['disk', ...args]).option('json', { type: 'boolean', default: false }).strict().fail((msg, err) => {
      throw err ?? new Error(msg);
    })).parseAsync();
  } finally {
    write.mockRestore();
    log.mockRestore();
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { out, code };
}

/**
 * qemu-io fed one command at a time on its stdin: `run` resolves with a command's output once
 * qemu-io prompts again (so the command has completed), `send` does not wait; `end` closes its
 * stdin and resolves with everything it printed.
 */
export function qemuIoSession(uri: string): { run(command: string): Promise<string>; send(command: string): void; end(): Promise<string> } {
  const child = spawn('qemu-io', ['-f', 'raw', uri], { stdio: ['pipe', 'pipe', 'pipe'] });
  let all = '';
  let expected = 1; // prompts qemu-io will have printed once what was sent has run: its first, one per command
  let waiting: (() => void) | undefined;
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const take = (b: Buffer) => {
    all += b.toString();
    waiting?.();
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const prompts = () => all.split('qemu-io> ').length - 1;
  const send = (command: string) => {
    child.stdin.write(`${command}\n`);
    expected++;
  };
  return {
    async run(command) {
      const from = all.length;
      send(command);
      while (prompts() < expected && child.exitCode === null) await new Promise<void>((r) => ((waiting = r), setTimeout(r, 100)));
      return all.slice(from);
    },
    send,
    async end() {
      child.stdin.end();
      await exited;
      return all;
    },
  };
}
