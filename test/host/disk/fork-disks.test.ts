// The fork path's disk glue (lib/clone/fork-disks.ts) with real qemu-storage-daemons and no
// Xen: two state directories stand for the parent's host and a clone's host, and a stand-in for
// nbd-client (this machine's kernel has no nbd module) that fails or "connects" on cue. What is
// checked: a fork's disks end up exported with a key of their own; a failed fork, a failed
// clone attach and a clone's teardown leave no front, slice export, overlay or key behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiskFamily } from '../../../lib/disk/family.js';
import { ForkDisks, attachCloneDisks, plugCloneDisks, releaseForkDisks, unplugCloneDisks, type DiskForkExport } from '../../../lib/clone/fork-disks.js';
import { useFamily } from '../../../lib/disk/use-family.js';
import { attachParentDisk, detachParentDisk } from '../../../lib/disk/parent-attach.js';
import { memoryStore } from '../../memory-xenstore.js';
import { daemonsUnder, haveTools, pattern, readAll, unixUri } from './harness.js';
import { fakeNbd } from './fake-nbd.js';

const MiB = 1 << 20;
const VBD = { devid: 51712, vdev: 'xvda', mode: 'w', family: 'deb', vm: 'deb67', disk: 'xvda' };

describe.skipIf(!haveTools)('a fork\'s disks (real qemu-storage-daemon, stand-in nbd-client)', () => {
  let root: string;
  let hostA: string;
  let hostB: string;
  let image: string;
  let exported: DiskForkExport[];
  /** the family on the parent's host (A) or the clone's (B), opened the way the fork path opens it */
  const onA = <T>(f: (d: DiskFamily) => Promise<T> | T) => useFamily('deb', { stateDir: hostA }, async (d) => f(d));
  const onB = <T>(f: (d: DiskFamily) => Promise<T> | T) => useFamily('deb', { stateDir: hostB }, async (d) => f(d));

  beforeAll(async () => {
    root = mkdtempSync('/tmp/sf-fork-disks-');
    hostA = join(root, 'a');
    hostB = join(root, 'b');
    image = join(root, 'deb.raw');
    writeFileSync(image, Buffer.concat([pattern(MiB, 1), Buffer.alloc(15 * MiB)]));
    await onA((f) => f.addParentDisk({ vm: 'deb67', disk: 'xvda', image, format: 'raw' }));
  });
  afterAll(async () => {
    for (const dir of [hostA, hostB]) await useFamily('deb', { stateDir: dir }, (f) => f.shutdown()).catch(() => undefined);
    for (const pid of root ? daemonsUnder(root) : []) process.kill(pid, 'SIGKILL');
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('block-snowflock\'s steps: a parent\'s disk into its family and onto an nbd device, and back; a failed attach leaves no head', async () => {
    const other = join(root, 'other.raw');
    writeFileSync(other, Buffer.alloc(16 * MiB));
    await expect(attachParentDisk({ family: 'deb', vm: 'web', disk: 'xvda', image: other, stateDir: hostA, nbd: fakeNbd(join(root, 'nbd-p1'), true) }))
      .rejects.toThrow(/attaching export web\/xvda .*free nbd devices were taken meanwhile/);
    expect(await onA((f) => f.heads().map((h) => h.vm))).toEqual(['deb67']);
    const nbd = fakeNbd(join(root, 'nbd-p2'));
    const a = await attachParentDisk({ family: 'deb', vm: 'web', disk: 'xvda', image: other, stateDir: hostA, nbd });
    expect([a.device, a.physicalDevice, a.export, a.added]).toEqual(['/dev/nbd0', '2b:0', 'web/xvda', true]);
    await expect(attachParentDisk({ family: 'deb', vm: 'nope', disk: 'xvda', stateDir: hostA, nbd })).rejects.toThrow(/has no disk nope\/xvda, and no image was given/);
    expect(await detachParentDisk({ device: a.device, family: 'deb', vm: 'web', stateDir: hostA, nbd })).toEqual({ removed: true });
    expect(nbd.calls.at(-1)).toEqual(['-d', '/dev/nbd0']);
    expect(await onA((f) => f.heads().map((h) => h.vm))).toEqual(['deb67']);
  });

  it('a fork that fails after prepare or after its freeze leaves no overlay, slice export or front', async () => {
    const prepared = new ForkDisks('failed1', [VBD], { stateDir: hostA });
    await prepared.prepare();
    const overlays = join(hostA, 'deb', 'overlays');
    expect(readdirSync(overlays)).toHaveLength(1);
    expect(await prepared.abandon()).toEqual([]);
    expect(readdirSync(overlays)).toHaveLength(0);

    const frozen = new ForkDisks('failed2', [VBD], { stateDir: hostA });
    await frozen.prepare();
    await frozen.freeze();
    await frozen.exportAll('127.0.0.1');
    expect(await onA((f) => f.fronts().map((x) => x.fork))).toEqual(['failed2']);
    expect(await frozen.abandon()).toEqual([]);
    expect(await onA((f) => f.fronts())).toEqual([]);
    expect(await onA((f) => f.slices('failed2').every((x) => x.released && !x.export))).toBe(true);
    expect(readdirSync(join(hostA, 'deb', 'psk'))).toEqual([]);
  });

  it('a fork exports the parent\'s disk with a key of its own; a clone\'s failed attach leaves nothing on its host', async () => {
    const fork = new ForkDisks('f1', [VBD], { stateDir: hostA });
    await fork.prepare();
    await fork.freeze();
    exported = await fork.exportAll('127.0.0.1');
    expect(exported).toEqual([{ family: 'deb', fork: 'f1', host: '127.0.0.1', port: expect.any(Number), psk: { identity: 'snowflock-f1', key: expect.stringMatching(/^[0-9a-f]{64}$/) }, exports: [{ vm: 'deb67', disk: 'xvda', name: 'xvda', sizeBytes: 16 * MiB }] }]);
    const nbd = fakeNbd(join(root, 'nbd-failing'), true);
    await expect(attachCloneDisks('deb67-c1', [VBD], exported, { stateDir: hostB, nbd })).rejects.toThrow(/attaching export deb67-c1\/xvda .*free nbd devices were taken meanwhile/);
    expect(await onB((b) => b.heads())).toEqual([]);
    expect(readdirSync(join(hostB, 'deb', 'overlays'))).toEqual([]);
  });

  it('a clone\'s disk: overlay over the slice, an nbd device, a vbd; its teardown removes all three', async () => {
    const nbd = fakeNbd(join(root, 'nbd-ok'));
    const xs = memoryStore();
    const disks = await plugCloneDisks(xs, 9, 'deb67-c1', [VBD], exported, { stateDir: hostB, nbd });
    expect(disks.map((d) => [d.device, d.physicalDevice, `${d.target.family}:${d.target.vm}/${d.target.disk}`])).toEqual([['/dev/nbd0', '2b:0', 'deb:deb67-c1/xvda']]);
    expect(nbd.calls[0]!.slice(0, 3)).toEqual(['-unix', join(hostB, 'deb', 'run', 'nbd.sock'), '/dev/nbd0']);
    expect(xs.read('/local/domain/0/backend/vbd/9/51712/params')).toBe('/dev/nbd0');
    // the clone's export reads the parent's disk as it was at the fork
    const scratch = mkdtempSync(join(root, 'scratch-'));
    const atFork = await readAll(unixUri(join(hostB, 'deb', 'run', 'nbd.sock'), 'deb67-c1/xvda'), scratch, 'c1');
    expect(atFork.subarray(0, MiB).equals(pattern(MiB, 1))).toBe(true);
    expect(await unplugCloneDisks(xs, 9, { stateDir: hostB, nbd })).toEqual([]);
    expect(nbd.calls.at(-1)).toEqual(['-d', '/dev/nbd0']);
    expect(xs.directory('/local/domain/0/backend/vbd/9')).toBeNull();
    expect(await onB((b) => b.heads())).toEqual([]);
    expect(readdirSync(join(hostB, 'deb', 'overlays'))).toEqual([]);
    await releaseForkDisks(exported, { stateDir: hostA });
    expect(await onA((f) => f.fronts())).toEqual([]);
  });
});
