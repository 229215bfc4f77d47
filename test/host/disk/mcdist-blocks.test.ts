// Disk blocks over mcdist (lib/disk/mcdist-backing.ts) on a lab network: one namespace is the
// parent's host (its mcdist server reads the fork's slice from the family daemon's unix socket),
// four are clones' hosts (each an mcdist client and the local NBD server its clone's overlay
// reads as backing). The QSDs run in this process's namespace and reach the workers through
// their unix sockets, as on a real host; only mcdist crosses the lab's bridge. Each clone reads
// the same 32 MiB of the fork through its overlay with qemu-io; the bytes are checked, and the
// bytes the parent's host sent for 4 clones are compared with 1 clone and with the front (the
// unicast path, TLS over TCP). Counts, not timings, are asserted.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskFamily, type ForkExport } from '../../../lib/disk/family.js';
import type { BackingStats, SliceSession } from '../../../lib/disk/mcdist-backing.js';
import { NbdClient } from '../../../lib/disk/nbd-client.js';
import { type Lab, createLab, listNamespaces } from '../../../lib/mcdist/netlab.js';
import type { ServerStats } from '../../../lib/mcdist/types.js';
import { WorkerProcess } from '../../../lib/mcdist/worker-process.js';
import { buildWorker } from '../mcdist/harness.js';
import { countingProxy } from './counting-proxy.js';
import { haveTools, pattern, qemuIo, removeHosts, testHosts, unixUri, withWrites, writeAt, type TestHosts } from './harness.js';

const run = promisify(execFile);
const MiB = 1 << 20;
const SIZE = 64 * MiB;
/** the region every clone reads */
const REGION = { offset: 8 * MiB, length: 32 * MiB };
const CLONES = 4;
const isRoot = process.getuid?.() === 0;

/** Bytes a namespace's eth0 has sent (IP headers and fragments included). */
async function txBytes(ns: string): Promise<number> {
  const { stdout } = await run('ip', ['-n', ns, '-j', '-s', 'link', 'show', 'eth0']);
  return (JSON.parse(stdout) as { stats64: { tx: { bytes: number } } }[])[0]!.stats64.tx.bytes;
}

interface Outcome {
  /** what the mcdist server counted (application bytes: headers and MACs included) */
  server: ServerStats;
  /** what the parent's namespace put on the wire */
  wire: number;
  backs: BackingStats[];
}

describe.skipIf(!haveTools || !isRoot)('disk blocks over mcdist between network namespaces', () => {
  let h: TestHosts;
  let lab: Lab;
  let script: string;
  let cleanupBuild: (() => Promise<void>) | undefined;
  let A: DiskFamily;
  const B: DiskFamily[] = [];
  let f1: ForkExport;
  let atFork: Buffer;
  const workers = new Set<WorkerProcess>();
  const results: Record<string, number> = {};

  const spawn = (ns: string, args: string[]) => {
    const w = new WorkerProcess(ns, args, script);
    workers.add(w);
    return w;
  };
  const sliceSocket = () => ({ socket: A.nbdSocket, export: 'slice/f1/parent/xvda' });

  beforeAll(async () => {
    const built = await buildWorker('lib/disk/mcdist-worker.ts');
    script = built.script;
    cleanupBuild = built.cleanup;
    lab = await createLab({ hosts: 1 + CLONES });
    h = testHosts('sfmcblk', SIZE);
    A = await DiskFamily.open({ stateDir: h.hostA, family: 'fam' });
    for (let i = 0; i < CLONES; i++) B.push(await DiskFamily.open({ stateDir: join(h.root, `c${i}`), family: 'fam' }));
    await A.addParentDisk({ vm: 'parent', disk: 'xvda', image: h.image, format: 'raw' });
    const mine = pattern(MiB, 2);
    await writeAt(unixUri(A.nbdSocket, 'parent/xvda'), REGION.offset + 3 * MiB, mine, h.scratch);
    atFork = withWrites(pattern(SIZE, 1), [[REGION.offset + 3 * MiB, mine]]);
    await A.freeze({ fork: 'f1', vm: 'parent' });
    f1 = await A.exportFork({ fork: 'f1', host: '127.0.0.1' });
  }, 180_000);

  afterAll(async () => {
    for (const w of workers) w.kill();
    await removeHosts(h?.root, [...B, A]);
    const prefix = lab?.prefix;
    await lab?.destroy();
    await cleanupBuild?.();
    if (prefix) expect(await listNamespaces(prefix)).toEqual([]);
    if (Object.keys(results).length) console.log(`mcdist for blocks, bytes the parent's host sent: ${JSON.stringify(results)}`);
  });

  /** An mcdist server for f1's slice in the parent's namespace; resolves with it and its descriptor. */
  async function startSliceServer(): Promise<{ server: WorkerProcess; descriptor: SliceSession }> {
    const { socket, export: name } = sliceSocket();
    const server = spawn(lab.hosts[0]!.ns, ['serve', '--socket', socket, '--export', name, '--address', lab.hosts[0]!.address, '--transport', 'multicast']);
    return { server, descriptor: (await server.waitFor('ready')).descriptor as SliceSession };
  }

  /** Clone i's backing in its namespace and its disk in its family over it. */
  async function startClone(i: number, vm: string, descriptor: SliceSession): Promise<WorkerProcess> {
    const host = lab.hosts[1 + i]!;
    const socket = join(h.root, `${vm}.sock`);
    const back = spawn(host.ns, ['back', '--descriptor', JSON.stringify(descriptor), '--socket', socket, '--interface', host.address, '--transport', 'multicast']);
    await back.waitFor('ready');
    await B[i]!.addCloneDisk({ vm, disk: 'xvda', source: { fork: 'f1', host: lab.hosts[0]!.address, port: 0, export: descriptor.name, psk: f1.psk, socket } });
    return back;
  }

  /** qemu-io reads the region in 1 MiB requests through the clone's overlay, as a guest would. */
  const readRegion = (i: number, vm: string) =>
    qemuIo(unixUri(B[i]!.nbdSocket, `${vm}/xvda`), Array.from({ length: REGION.length / MiB }, (_, k) => `read ${REGION.offset + k * MiB} ${MiB}`));

  /** The region as the clone reads it now (our NBD client on the clone's export), compared with the fork. */
  async function expectRegion(i: number, vm: string): Promise<void> {
    const c = await NbdClient.connect({ path: B[i]!.nbdSocket }, `${vm}/xvda`);
    try {
      const got = await c.read(REGION.offset, REGION.length);
      expect(got.equals(atFork.subarray(REGION.offset, REGION.offset + REGION.length)), `clone ${vm} reads the fork's bytes`).toBe(true);
    } finally {
      c.close();
    }
  }

  const stopAll = async (ws: WorkerProcess[]) => {
    const stats = await Promise.all(ws.map(async (w) => {
      await w.stop();
      workers.delete(w);
      return w.events.find((e) => e.event === 'stats')?.stats;
    }));
    if (stats.some((s) => !s)) throw new Error(`a worker reported no stats: ${ws.map((w) => w.stderr).join('\n')}`);
    return stats;
  };

  /** `n` clones read the region at once over one slice server. */
  async function clonesRead(n: number, tag: string): Promise<Outcome> {
    const { server, descriptor } = await startSliceServer();
    const vms = Array.from({ length: n }, (_, i) => `${tag}${i}`);
    const backs = await Promise.all(vms.map((vm, i) => startClone(i, vm, descriptor)));
    const wire0 = await txBytes(lab.hosts[0]!.ns);
    await Promise.all(vms.map((vm, i) => readRegion(i, vm)));
    server.send('stats read');
    const afterRead = (await server.waitFor('stats-read')).stats as ServerStats;
    const wire = (await txBytes(lab.hosts[0]!.ns)) - wire0;
    for (const [i, vm] of vms.entries()) await expectRegion(i, vm);
    const backStats = (await stopAll(backs)) as BackingStats[];
    const [final] = (await stopAll([server])) as ServerStats[];
    // reading the region again was answered from the clones' caches: nothing more was sent
    expect(final!.blocksSent).toBe(afterRead.blocksSent);
    for (const [i, vm] of vms.entries()) await B[i]!.removeVm(vm);
    return { server: afterRead, wire, backs: backStats };
  }

  it('4 clones reading the same 32 MiB get exact bytes; the parent\'s host sends about one copy', async () => {
    const blocks = REGION.length / (32 * 1024);
    const one = await clonesRead(1, 'one');
    expect(one.backs[0]!.blocksWanted).toBe(blocks);
    expect(one.backs[0]!.mcdist.transport).toBe('multicast');
    const four = await clonesRead(CLONES, 'four');
    for (const b of four.backs) {
      expect(b.blocksWanted).toBe(blocks);
      expect(b.mcdist.blocksReceived).toBeGreaterThanOrEqual(blocks);
      expect(b.nbd.refused).toBe(0);
    }
    // the unicast path: the same reads by 4 clones through the fork's front (TLS), counted by a proxy
    const proxy = await countingProxy({ host: '127.0.0.1', port: f1.port });
    try {
      for (let i = 0; i < CLONES; i++) {
        await B[i]!.addCloneDisk({ vm: `uni${i}`, disk: 'xvda', source: { fork: 'f1', host: '127.0.0.1', port: proxy.port, export: 'xvda', psk: f1.psk } });
      }
      await Promise.all(Array.from({ length: CLONES }, (_, i) => readRegion(i, `uni${i}`)));
      results.unicastFront4 = proxy.fromServer;
      for (let i = 0; i < CLONES; i++) await B[i]!.removeVm(`uni${i}`);
    } finally {
      await proxy.close();
    }
    Object.assign(results, {
      mcdist1: one.server.bytesSent, mcdist4: four.server.bytesSent, wire1: one.wire, wire4: four.wire,
      blocksSent1: one.server.blocksSent, blocksSent4: four.server.blocksSent,
    });
    const ratio = four.server.bytesSent / one.server.bytesSent;
    const wireRatio = four.wire / one.wire;
    const unicast = results.unicastFront4! / one.server.bytesSent;
    const line = `4 clones vs 1 over mcdist: ${ratio.toFixed(3)}x (server bytes ${four.server.bytesSent} vs ${one.server.bytesSent}; on the wire ${wireRatio.toFixed(3)}x, ${four.wire} vs ${one.wire}); `
      + `4 clones over the front (unicast TLS): ${unicast.toFixed(3)}x (${results.unicastFront4} bytes)`;
    console.log(line);
    const { resends, losses, stale, merged, suppressed, rateCuts } = four.server;
    console.log(`4 clones: server resends ${resends} (losses ${losses}, stale ${stale}), merged ${merged}, suppressed ${suppressed}, rate cuts ${rateCuts}; clients' duplicates ${four.backs.map((b) => b.mcdist.duplicates).join(' ')}, retransmits ${four.backs.map((b) => b.mcdist.retransmits).join(' ')}`);
    // one send reaches every clone: well under the 4x of unicast (the goal is 1.2x; timings vary)
    expect(ratio).toBeLessThan(2);
    expect(unicast).toBeGreaterThan(3.5);
  }, 600_000);

  it('a clone that writes whole blocks before reading them fetches nothing for them; a partial write fetches its block', async () => {
    const { server, descriptor } = await startSliceServer();
    const back = await startClone(0, 'w0', descriptor);
    const uri = unixUri(B[0]!.nbdSocket, 'w0/xvda');
    const stats = async (tag: string) => {
      back.send(`stats ${tag}`);
      return (await back.waitFor(`stats-${tag}`)).stats as BackingStats;
    };
    // 64 KiB written (two 32 KiB blocks, one qcow2 cluster), then read back
    await qemuIo(uri, ['write -P 0xab 48M 64k', 'read -P 0xab 48M 64k']);
    expect(await stats('whole')).toMatchObject({ blocksWanted: 0, nbd: { reads: 0 }, mcdist: { requestsSent: 0 } });
    // 512 bytes inside a 2 KiB subcluster: qcow2 reads that subcluster, which is one block
    await qemuIo(uri, ['write -P 0xcd 50M 512']);
    const partial = await stats('partial');
    expect(partial.blocksWanted).toBe(1);
    expect(partial.nbd.bytesRead).toBe(2048 - 512); // the rest of the subcluster
    // the written bytes and the fork's bytes around them
    const c = await NbdClient.connect({ path: B[0]!.nbdSocket }, 'w0/xvda');
    const near = await c.read(50 * MiB, 4096);
    c.close();
    expect(near.equals(withWrites(atFork.subarray(50 * MiB, 50 * MiB + 4096), [[0, Buffer.alloc(512, 0xcd)]]))).toBe(true);
    await stopAll([back, server]);
    await B[0]!.removeVm('w0');
  }, 300_000);
});
