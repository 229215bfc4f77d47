// Host-test support for disks: images with known content, and the real NBD and QEMU tools
// (qemu-io, qemu-img, nbdcopy, nbdinfo) run against a family's exports.
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Psk } from '../../../lib/disk/psk.js';

const run = promisify(execFile);

export const haveTools = ['qemu-storage-daemon', 'qemu-img', 'qemu-io', 'nbdcopy', 'nbdinfo'].every((t) => spawnSync(t, ['--version']).status === 0);

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
