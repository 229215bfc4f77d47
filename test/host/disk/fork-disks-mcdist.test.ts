// The fork path's disks with `blocks: 'mcdist'` (lib/clone/fork-disks.ts, disk-transport.ts):
// real qemu-storage-daemons, the real detached mcdist workers, multicast on this host's loopback
// (TTL 1, looped back), and three state directories standing for the parent's host and two
// clone hosts (a stand-in for nbd-client, as fork-disks.test.ts). Checked: clones read the slice
// byte-exact through their overlays; two clones on one host share one backing; three clones
// reading the whole disk cost the parent's slice server about one clone's bytes; a clone host
// whose multicast delivers nothing (an nftables drop) reads the front and says so; a failed
// attach, the last clone's removal and the fork's release leave no worker, socket or record.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ForkDisks, attachCloneDisks, releaseForkDisks, type CloneDisksOptions, type DiskForkExport } from '../../../lib/clone/fork-disks.js';
import { backingsOf } from '../../../lib/disk/shared-backings.js';
import { useFamily } from '../../../lib/disk/use-family.js';
import { decodeSession } from '../../../lib/mcdist/session.js';
import { buildWorker } from '../mcdist/harness.js';
import { fakeNbd } from './fake-nbd.js';
import { daemonsUnder, haveTools, pattern, readAll, unixUri } from './harness.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
const VBD = { devid: 51712, vdev: 'xvda', mode: 'w', family: 'deb', vm: 'deb67', disk: 'xvda' };
const isRoot = process.getuid?.() === 0;
const haveNft = spawnSync('nft', ['--version']).status === 0;

/** pids of mcdist workers started from `script` */
function workersOf(script: string): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'latin1').includes(script);
    } catch {
      return false;
    }
  }).map(Number);
}

describe.skipIf(!haveTools)('a fork\'s disks over mcdist (real QSDs and workers, multicast on lo)', () => {
  let root: string;
  let hostA: string;
  let hostB: string;
  let hostC: string;
  let image: Buffer;
  let script: string;
  let cleanupBuild: (() => Promise<void>) | undefined;
  const results: Record<string, unknown> = {};
  const mcdist = () => ({ worker: script, interfaceAddress: '127.0.0.1' });
  const cloneOpts = (stateDir: string, tag: string, failing = false): CloneDisksOptions => ({ stateDir, nbd: fakeNbd(join(root, `nbd-${tag}`), failing), mcdist: mcdist() });
  const remove = (stateDir: string, vm: string) => useFamily('deb', { stateDir }, (f) => f.removeVm(vm));

  async function fork(name: string): Promise<DiskForkExport[]> {
    const f = new ForkDisks(name, [VBD], { stateDir: hostA, blocks: 'mcdist', mcdist: mcdist() });
    await f.prepare();
    await f.freeze();
    const exported = await f.exportAll('127.0.0.1');
    f.close();
    return exported;
  }

  /** The slice server's counters: SIGUSR1 makes it write them to its log. */
  async function serverStats(name: string): Promise<{ bytesSent: number; blocksSent: number; requestsReceived: number }> {
    const base = join(hostA, 'deb', 'mcdist', `serve-${name}`, 'deb67.xvda');
    const lines = () => readFileSync(`${base}.log`, 'utf8').split('\n').filter((l) => l.startsWith('stats '));
    const had = lines().length;
    process.kill(Number(readFileSync(`${base}.pid`, 'utf8')), 'SIGUSR1');
    for (let i = 0; i < 100; i++) {
      const now = lines();
      if (now.length > had) return JSON.parse(now.at(-1)!.slice(6));
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the slice server wrote no stats');
  }

  beforeAll(async () => {
    ({ script, cleanup: cleanupBuild } = await buildWorker('lib/disk/mcdist-worker.ts'));
    root = mkdtempSync('/tmp/sf-fdmc-');
    [hostA, hostB, hostC] = ['a', 'b', 'c'].map((x) => join(root, x)) as [string, string, string];
    image = pattern(SIZE, 3);
    writeFileSync(join(root, 'deb.raw'), image);
    await useFamily('deb', { stateDir: hostA }, (f) => f.addParentDisk({ vm: 'deb67', disk: 'xvda', image: join(root, 'deb.raw'), format: 'raw' }));
  }, 120_000);

  afterAll(async () => {
    for (const dir of [hostA, hostB, hostC]) if (dir) await useFamily('deb', { stateDir: dir }, (f) => f.shutdown()).catch(() => undefined);
    for (const pid of root ? daemonsUnder(root) : []) process.kill(pid, 'SIGKILL');
    for (const pid of script ? workersOf(script) : []) process.kill(pid, 'SIGKILL');
    if (root) rmSync(root, { recursive: true, force: true });
    await cleanupBuild?.();
    if (Object.keys(results).length) console.log(`fork disks over mcdist: ${JSON.stringify(results)}`);
  });

  it('three clones on two hosts read the slice byte-exact for about one clone\'s bytes; release leaves nothing', async () => {
    const exported = await fork('m1');
    expect(exported[0]!.blocks).toEqual([{ vm: 'deb67', disk: 'xvda', blocks: 'mcdist' }]);
    expect(exported[0]!.mcdist).toHaveLength(1);
    expect(existsSync(join(hostA, 'deb', 'mcdist', 'serve-m1', 'deb67.xvda.pid'))).toBe(true);

    const c1 = await attachCloneDisks('deb67-c1', [VBD], exported, cloneOpts(hostB, 'b1'));
    const c2 = await attachCloneDisks('deb67-c2', [VBD], exported, cloneOpts(hostB, 'b2'));
    const c3 = await attachCloneDisks('deb67-c3', [VBD], exported, cloneOpts(hostC, 'c3'));
    expect([c1, c2, c3].map((c) => c[0]!.blocks)).toEqual(['mcdist', 'mcdist', 'mcdist']);
    // one backing per host for the fork's disk, shared by that host's clones
    expect(backingsOf(join(hostB, 'deb'))).toHaveLength(1);
    expect(readdirSync(join(hostB, 'deb', 'mcdist', backingsOf(join(hostB, 'deb'))[0]!, 'users')).sort()).toEqual(['deb67-c1', 'deb67-c2']);
    expect(backingsOf(join(hostC, 'deb'))).toHaveLength(1);
    expect(workersOf(script)).toHaveLength(3); // the slice server and two backings

    const before = await serverStats('m1');
    const scratch = mkdtempSync(join(root, 'scratch-'));
    const reads = await Promise.all([
      readAll(unixUri(join(hostB, 'deb', 'run', 'nbd.sock'), 'deb67-c1/xvda'), scratch, 'c1'),
      readAll(unixUri(join(hostB, 'deb', 'run', 'nbd.sock'), 'deb67-c2/xvda'), scratch, 'c2'),
      readAll(unixUri(join(hostC, 'deb', 'run', 'nbd.sock'), 'deb67-c3/xvda'), scratch, 'c3'),
    ]);
    for (const r of reads) expect(r.equals(image)).toBe(true);
    const after = await serverStats('m1');
    const sent = after.bytesSent - before.bytesSent;
    // one clone reading the whole disk once: every block once, with its header, nonce and tag
    const oneClone = SIZE + (SIZE / (32 * 1024)) * 52;
    results.threeClonesVsOne = Number((sent / oneClone).toFixed(3));
    results.bytesSent = sent;
    results.blocksSent = after.blocksSent - before.blocksSent;
    expect(sent / oneClone).toBeLessThan(1.5); // over the fronts: 3x

    // the host's last clone of the fork takes the backing with it
    await remove(hostB, 'deb67-c1');
    expect(backingsOf(join(hostB, 'deb'))).toHaveLength(1);
    await remove(hostB, 'deb67-c2');
    await remove(hostC, 'deb67-c3');
    expect(backingsOf(join(hostB, 'deb'))).toEqual([]);
    expect(backingsOf(join(hostC, 'deb'))).toEqual([]);
    await releaseForkDisks(exported, { stateDir: hostA });
    expect(existsSync(join(hostA, 'deb', 'mcdist', 'serve-m1'))).toBe(false);
    expect(workersOf(script)).toEqual([]);
    expect(await useFamily('deb', { stateDir: hostA }, async (f) => f.fronts())).toEqual([]);
  }, 120_000);

  it('a failed clone attach leaves no backing, worker or socket', async () => {
    const exported = await fork('m2');
    await expect(attachCloneDisks('deb67-x', [VBD], exported, cloneOpts(hostB, 'fail', true))).rejects.toThrow(/free nbd devices were taken meanwhile/);
    expect(backingsOf(join(hostB, 'deb'))).toEqual([]);
    expect(await useFamily('deb', { stateDir: hostB }, async (f) => f.heads())).toEqual([]);
    await releaseForkDisks(exported, { stateDir: hostA });
    expect(workersOf(script)).toEqual([]);
  }, 60_000);

  it.skipIf(!isRoot || !haveNft)('a clone host whose multicast delivers nothing reads the front, and says why', async () => {
    const exported = await fork('m3');
    const port = decodeSession(exported[0]!.mcdist![0]!.session).groupPort;
    const table = `sfmcfork${process.pid}`;
    // the group's datagrams never reach a socket on this host: multicast "blocked" on the clone's network
    execFileSync('nft', ['-f', '-'], { input: `table ip ${table} {\n chain input {\n  type filter hook input priority -10;\n  udp dport ${port} drop\n }\n}\n` });
    try {
      const c = await attachCloneDisks('deb67-f1', [VBD], exported, { ...cloneOpts(hostB, 'f1'), mcdist: { ...mcdist(), checkMs: 1000 } });
      expect(c[0]!.blocks).toBe('front');
      expect(c[0]!.fallback).toMatch(/mcdist backing of deb67\/xvda of fork m3: no block of xvda arrived within 1000 ms over multicast/);
      expect(backingsOf(join(hostB, 'deb'))).toEqual([]);
      const got = await readAll(unixUri(join(hostB, 'deb', 'run', 'nbd.sock'), 'deb67-f1/xvda'), mkdtempSync(join(root, 'scratch-')), 'f1');
      expect(got.equals(image)).toBe(true);
      await remove(hostB, 'deb67-f1');
    } finally {
      execFileSync('nft', ['delete', 'table', 'ip', table]);
    }
    await releaseForkDisks(exported, { stateDir: hostA });
    expect(workersOf(script)).toEqual([]);
  }, 60_000);
});
