// Copy-on-write disks with a real qemu-storage-daemon, no Xen: two "hosts" (two state
// directories, each with the family's own daemon) on this machine. A parent's raw image is
// frozen at a fork; its slice, exported over TCP with the fork's TLS PSK, is what every clone
// reads; clones write to their own overlays, which real NBD clients (qemu-io, nbdcopy,
// nbdinfo, qemu-img) reach on the family's unix socket. Refusals and cleanup included.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statfsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { DiskFamily, type ForkExport } from '../../../lib/disk/family.js';
import { DiskError } from '../../../lib/disk/errors.js';
import { QmpClient } from '../../../lib/disk/qmp.js';
import { countingProxy, type CountingProxy } from './counting-proxy.js';
import { daemonGraph, daemonsUnder, haveTools, nbdinfo, pattern, qemuImgCompare, qemuIo, readAll, removeHosts, snowflockDisk, tlsUri, tree, unixUri, withWrites, writeAt } from './harness.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
const isRoot = process.getuid?.() === 0;

describe.skipIf(!haveTools)('copy-on-write disks (qemu-storage-daemon, NBD, TLS-PSK)', () => {
  let root: string;
  let hostA: string; // the parent's host
  let hostB: string; // the clones' host
  let scratch: string;
  let image: string;
  let A: DiskFamily;
  let B: DiskFamily;
  let f1: ForkExport;
  let proxy: CountingProxy | undefined;
  /** what the parent's disk held at the fork */
  let atFork: Buffer;
  const c1Data = pattern(64 * 1024, 11);
  const c2Data = pattern(64 * 1024, 12);
  const parentAfter = pattern(MiB, 13);

  const uriOf = (f: DiskFamily, vm: string, disk = 'xvda') => unixUri(f.nbdSocket, `${vm}/${disk}`);
  const expectWith = withWrites;
  /** The nodes of a family's daemon that are read-only. */
  async function readOnlyNodes(f: DiskFamily): Promise<string[]> {
    const q = await QmpClient.connect(f.daemon.query);
    try {
      const nodes = await q.execute<{ 'node-name': string; ro: boolean }[]>('query-named-block-nodes', { flat: true });
      return nodes.filter((n) => n.ro && !n['node-name'].startsWith('#')).map((n) => n['node-name']).sort();
    } finally {
      q.close();
    }
  }
  /** What a family's daemon holds, through its query monitor. */
  const graph = (f: DiskFamily) => daemonGraph(f.daemon.query);

  beforeAll(async () => {
    root = mkdtempSync('/tmp/sfdisk-');
    hostA = join(root, 'a');
    hostB = join(root, 'b');
    scratch = join(root, 'scratch');
    mkdirSync(scratch);
    image = join(root, 'parent.raw');
    writeFileSync(image, pattern(SIZE, 1));
    A = await DiskFamily.open({ stateDir: hostA, family: 'fam' });
    B = await DiskFamily.open({ stateDir: hostB, family: 'fam' });
  });

  afterAll(async () => {
    await proxy?.close();
    await removeHosts(root, [B, A]);
  });

  it('a parent writes its raw image through the family; a freeze keeps the fork instant in slice 1', async () => {
    const head = await A.addParentDisk({ vm: 'parent', disk: 'xvda', image, format: 'raw' });
    expect(head.sizeBytes).toBe(SIZE);
    // the new overlay is made while the parent runs; what it writes until the freeze is in the slice
    await A.prepareFreeze({ fork: 'f1', vm: 'parent' });
    await writeAt(uriOf(A, 'parent'), 3 * MiB, pattern(MiB, 2), scratch); // before the fork
    atFork = expectWith(pattern(SIZE, 1), [[3 * MiB, pattern(MiB, 2)]]);
    expect((await readAll(uriOf(A, 'parent'), scratch, 'parent-pre')).equals(atFork)).toBe(true);

    const slices = await A.freeze({ fork: 'f1', vm: 'parent' });
    expect(slices).toMatchObject([{ fork: 'f1', vm: 'parent', disk: 'xvda', n: 1, file: image, export: 'slice/f1/parent/xvda' }]);
    // the parent goes on writing, into its new overlay
    await writeAt(uriOf(A, 'parent'), 0, parentAfter, scratch);
    await writeAt(uriOf(A, 'parent'), 8 * MiB, parentAfter, scratch);
    const now = await readAll(uriOf(A, 'parent'), scratch, 'parent-post');
    expect(now.equals(expectWith(atFork, [[0, parentAfter], [8 * MiB, parentAfter]]))).toBe(true);
    // its image (the slice's own blocks) is untouched
    expect(readFileSync(image).equals(atFork)).toBe(true);
  });

  it('the slice export over TLS-PSK reads exactly the disk at the fork (nbdinfo, nbdcopy, qemu-img compare)', async () => {
    f1 = await A.exportFork({ fork: 'f1', host: '127.0.0.1' });
    expect(f1.exports).toEqual([{ vm: 'parent', disk: 'xvda', name: 'xvda', sizeBytes: SIZE }]);
    const uri = tlsUri(scratch, '127.0.0.1', f1.port, 'xvda', f1.psk);
    const info = await nbdinfo(uri);
    expect(info.ok, info.out).toBe(true);
    expect(JSON.parse(info.out).exports[0]).toMatchObject({ 'export-name': 'xvda', 'export-size': SIZE, is_read_only: true });
    expect((await readAll(uri, scratch, 'slice')).equals(atFork)).toBe(true);

    const atForkFile = join(scratch, 'at-fork.raw');
    writeFileSync(atForkFile, atFork);
    const pskDir = join(scratch, 'psk-f1');
    mkdirSync(pskDir, { mode: 0o700 });
    writeFileSync(join(pskDir, 'keys.psk'), `${f1.psk.identity}:${f1.psk.key}\n`, { mode: 0o600 });
    const slice = [
      '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${pskDir},username=${f1.psk.identity}`,
      '--image-opts', `driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port=${f1.port},file.export=xvda,file.tls-creds=tls0`,
    ];
    const same = await qemuImgCompare([...slice, `driver=raw,file.filename=${atForkFile}`]);
    expect(same.code, same.out).toBe(0);
    // and the same comparison against the parent as it is now finds the post-fork writes
    const differ = await qemuImgCompare([...slice, `driver=raw,file.filename=${join(scratch, 'copy-parent-post.raw')}`]);
    expect(differ.code, differ.out).toBe(1);
  });

  it('two clones on another host read the fork byte-exact and write only to their own overlays', async () => {
    for (const vm of ['c1', 'c2']) {
      await B.addCloneDisk({ vm, disk: 'xvda', source: { fork: 'f1', host: '127.0.0.1', port: f1.port, export: 'xvda', psk: f1.psk } });
    }
    await writeAt(uriOf(B, 'c1'), 2 * MiB, c1Data, scratch);
    await writeAt(uriOf(B, 'c2'), 2 * MiB, c2Data, scratch);
    await writeAt(uriOf(B, 'c2'), 12 * MiB, c2Data, scratch);
    const c1 = await readAll(uriOf(B, 'c1'), scratch, 'c1');
    const c2 = await readAll(uriOf(B, 'c2'), scratch, 'c2');
    // own data, the parent's pre-fork data everywhere else; no sibling's, no parent's post-fork write
    expect(c1.equals(expectWith(atFork, [[2 * MiB, c1Data]]))).toBe(true);
    expect(c2.equals(expectWith(atFork, [[2 * MiB, c2Data], [12 * MiB, c2Data]]))).toBe(true);
    // the parent is untouched by both
    const parent = await readAll(uriOf(A, 'parent'), scratch, 'parent-after-clones');
    expect(parent.equals(expectWith(atFork, [[0, parentAfter], [8 * MiB, parentAfter]]))).toBe(true);
    // the overlays are sparse: a 16 MiB disk, two small writes
    const usage = await B.usage();
    for (const h of usage.heads) expect(h.allocatedBytes).toBeLessThan(2 * MiB);
  });

  it('clone overlays offer what a kernel client needs: flush, trim, zeroes, block status', async () => {
    const info = JSON.parse((await nbdinfo(uriOf(B, 'c1'))).out).exports[0];
    expect(info).toMatchObject({ is_read_only: false, can_flush: true, can_trim: true, can_zero: true });
    expect(info.contexts).toContain('base:allocation');
    await qemuIo(uriOf(B, 'c1'), ['discard 14M 1M', 'flush', 'read -P 0 14M 1M']);
    // trimmed blocks read as zeroes, not as the slice under them
    const c1 = await readAll(uriOf(B, 'c1'), scratch, 'c1-trim');
    expect(c1.equals(expectWith(atFork, [[2 * MiB, c1Data], [14 * MiB, Buffer.alloc(MiB)]]))).toBe(true);
  });

  it('a restarted owner finds the running daemon and its disks', async () => {
    const pid = B.pid;
    B.close();
    B = await DiskFamily.open({ stateDir: hostB, family: 'fam' });
    expect(B.pid).toBe(pid);
    expect(B.heads().map((h) => h.export)).toEqual(['c1/xvda', 'c2/xvda']);
    expect((await readAll(uriOf(B, 'c2'), scratch, 'c2-again')).equals(expectWith(atFork, [[2 * MiB, c2Data], [12 * MiB, c2Data]]))).toBe(true);
  });

  it('a fork of a clone sees its parent clone\'s writes and not its sibling\'s', async () => {
    const slices = await B.freeze({ fork: 'f2', vm: 'c1' });
    expect(slices).toMatchObject([{ fork: 'f2', vm: 'c1', n: 1 }]);
    const c1After = pattern(64 * 1024, 21);
    await writeAt(uriOf(B, 'c1'), 5 * MiB, c1After, scratch); // after f2: its clones must not see it
    const f2 = await B.exportFork({ fork: 'f2', host: '127.0.0.1' });
    await A.addCloneDisk({ vm: 'g1', disk: 'xvda', source: { fork: 'f2', host: '127.0.0.1', port: f2.port, export: 'xvda', psk: f2.psk } });
    const g1Data = pattern(4096, 22);
    await writeAt(uriOf(A, 'g1'), 9 * MiB, g1Data, scratch);
    const g1 = await readAll(uriOf(A, 'g1'), scratch, 'g1');
    const c1AtF2 = expectWith(atFork, [[2 * MiB, c1Data], [14 * MiB, Buffer.alloc(MiB)]]);
    expect(g1.equals(expectWith(c1AtF2, [[9 * MiB, g1Data]]))).toBe(true);
    // c1 itself goes on with its own later write
    expect((await readAll(uriOf(B, 'c1'), scratch, 'c1-after-f2')).equals(expectWith(c1AtF2, [[5 * MiB, c1After]]))).toBe(true);

    // a client of f2 is not a client of f1: f2's key does not open f1's front
    const wrong = await nbdinfo(tlsUri(scratch, '127.0.0.1', f1.port, 'xvda', f2.psk));
    expect(wrong.ok).toBe(false);
    // a clone cannot be removed while its fork is exported
    await expect(B.removeVm('c1')).rejects.toMatchObject({ code: 'in-use' });
  });

  it('a write covering whole subclusters fetches nothing from the slice; a partial one fetches its subcluster', async () => {
    proxy = await countingProxy({ host: '127.0.0.1', port: f1.port });
    await B.addCloneDisk({ vm: 'c3', disk: 'xvda', source: { fork: 'f1', host: '127.0.0.1', port: proxy.port, export: 'xvda', psk: f1.psk } });
    try {
      const uri = uriOf(B, 'c3');
      await new Promise((r) => setTimeout(r, 100));
      proxy.reset();
      await writeAt(uri, 4 * MiB, pattern(4096, 31), scratch); // 4 KiB, aligned: two whole 2 KiB subclusters
      await writeAt(uri, 6 * MiB + 64 * 1024, pattern(64 * 1024, 32), scratch); // a whole cluster
      const whole = proxy.fromServer;
      proxy.reset();
      await writeAt(uri, 7 * MiB + 100, pattern(512, 33), scratch); // inside one subcluster: its other 1536 bytes come from the slice
      const partial = proxy.fromServer;
      proxy.reset();
      await qemuIo(uri, ['read 10M 64k']);
      const read = proxy.fromServer;
      console.log(`slice bytes fetched (TLS records included): whole-subcluster writes ${whole}, a 512-byte write ${partial}, a 64 KiB read ${read}`);
      expect(whole).toBe(0);
      expect(partial).toBeGreaterThanOrEqual(1536);
      expect(partial).toBeLessThan(16 * 1024);
      expect(read).toBeGreaterThanOrEqual(64 * 1024);
      // and the data is right: the partial write merged with the slice's bytes around it
      const c3 = await readAll(uri, scratch, 'c3');
      expect(c3.equals(expectWith(atFork, [[4 * MiB, pattern(4096, 31)], [6 * MiB + 64 * 1024, pattern(64 * 1024, 32)], [7 * MiB + 100, pattern(512, 33)]]))).toBe(true);
    } finally {
      await B.removeVm('c3');
    }
  });

  it('a wrong PSK and an unknown export are refused by name, and leave nothing behind', async () => {
    const before = { graph: await graph(B), files: tree(B.dir) };
    const wrongKey = { ...f1.psk, key: 'ab'.repeat(32) };
    const e1 = await B.addCloneDisk({ vm: 'c4', disk: 'xvda', source: { fork: 'f1', host: '127.0.0.1', port: f1.port, export: 'xvda', psk: wrongKey } }).catch((e) => e);
    expect(e1).toBeInstanceOf(DiskError);
    expect(e1.code).toBe('wrong-psk');
    expect(e1.message).toMatch(/export xvda of fork f1 at 127\.0\.0\.1:\d+: the slice server refused this key/);
    const e2 = await B.addCloneDisk({ vm: 'c4', disk: 'xvda', source: { fork: 'f1', host: '127.0.0.1', port: f1.port, export: 'nope', psk: f1.psk } }).catch((e) => e);
    expect(e2.code).toBe('unknown-export');
    expect(e2.message).toMatch(/export nope of fork f1.*no export of that name/);
    expect(await graph(B)).toEqual(before.graph);
    expect(tree(B.dir)).toEqual(before.files);
    // the same refusals seen by libnbd
    expect((await nbdinfo(tlsUri(scratch, '127.0.0.1', f1.port, 'xvda', wrongKey))).ok).toBe(false);
    const unknown = await nbdinfo(tlsUri(scratch, '127.0.0.1', f1.port, 'nope', f1.psk));
    expect(unknown.ok).toBe(false);
    expect(unknown.out, unknown.out).toMatch(/No such file or directory for export: nope/);
    // and without TLS the front says nothing but that TLS is required
    expect((await nbdinfo(`nbd://127.0.0.1:${f1.port}/xvda`)).ok).toBe(false);
  });

  it('a second fork freezes both of the parent\'s disks (raw and qcow2) at once; a failure mid-way through its export leaves nothing', async () => {
    const image2 = join(root, 'second.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image2, '4M']);
    await A.addParentDisk({ vm: 'parent', disk: 'xvdb', image: image2 });
    const xvdb = pattern(4 * MiB, 51);
    await writeAt(uriOf(A, 'parent', 'xvdb'), 0, xvdb, scratch);
    // a freeze prepared and abandoned (a fork that failed before it) leaves nothing
    const untouched = { graph: await graph(A), files: tree(A.dir) };
    await A.prepareFreeze({ fork: 'f3', vm: 'parent' });
    expect(tree(A.dir).filter((f) => f.endsWith('.qcow2'))).toHaveLength(untouched.files.filter((f) => f.endsWith('.qcow2')).length + 2);
    await A.abandonFreeze('f3');
    expect(await graph(A)).toEqual(untouched.graph);
    expect(tree(A.dir)).toEqual(untouched.files);
    const xvdaAtF3 = await readAll(uriOf(A, 'parent'), scratch, 'parent-f3');
    expect(xvdaAtF3.equals(expectWith(atFork, [[0, parentAfter], [8 * MiB, parentAfter]]))).toBe(true);
    const slices = await A.freeze({ fork: 'f3', vm: 'parent' });
    expect(slices.map((s) => [s.disk, s.n])).toEqual([['xvda', 2], ['xvdb', 1]]);
    // every slice node is read-only now (a raw image, an overlay, a qcow2 image)
    const ro = await readOnlyNodes(A);
    for (const s of [...A.slices('f1'), ...slices]) expect(ro).toContain(s.node);
    await writeAt(uriOf(A, 'parent'), 0, pattern(4096, 52), scratch);
    await writeAt(uriOf(A, 'parent', 'xvdb'), 0, pattern(4096, 53), scratch);

    const before = { graph: await graph(A), files: tree(A.dir), daemons: daemonsUnder(A.dir).length };
    // 192.0.2.1 (TEST-NET-1) is no address of this host: the front's socket cannot be bound
    const e = await A.exportFork({ fork: 'f3', host: '192.0.2.1', port: 47809 }).catch((x) => x);
    expect(e).toBeInstanceOf(DiskError);
    expect(e.message).toMatch(/^exporting fork f3 on 192\.0\.2\.1:47809: cannot listen: bind .*Cannot assign requested address/);
    expect(e.code).toBe('cannot-listen');
    expect(daemonsUnder(A.dir).length).toBe(before.daemons);
    expect(await graph(A)).toEqual(before.graph);
    expect(tree(A.dir)).toEqual(before.files);
    expect(A.fronts().map((f) => f.fork)).toEqual(['f1']);
    // the fork can still be exported where it can listen, and holds both disks as they were at it
    const f3 = await A.exportFork({ fork: 'f3', host: '127.0.0.1' });
    expect(f3.exports.map((x) => x.name)).toEqual(['xvda', 'xvdb']);
    expect((await readAll(tlsUri(scratch, '127.0.0.1', f3.port, 'xvda', f3.psk), scratch, 'f3-xvda')).equals(xvdaAtF3)).toBe(true);
    expect((await readAll(tlsUri(scratch, '127.0.0.1', f3.port, 'xvdb', f3.psk), scratch, 'f3-xvdb')).equals(xvdb)).toBe(true);
    await A.releaseFork('f3');
    expect(A.fronts().map((f) => f.fork)).toEqual(['f1']);
  });

  it('snowflock disk slices / overlays list what each host holds (--json)', async () => {
    const { slices } = JSON.parse((await snowflockDisk('slices', 'fam', '--state-dir', hostA, '--json')).out);
    expect(slices.map((s: { fork: string; vm: string; n: number; state: string }) => [s.fork, s.vm, s.n, s.state])).toEqual([['f1', 'parent', 1, 'exported'], ['f3', 'parent', 2, 'released'], ['f3', 'parent', 1, 'released']]);
    expect(slices[0]).toMatchObject({ port: f1.port, host: '127.0.0.1', frontAlive: true, file: image });
    const { overlays } = JSON.parse((await snowflockDisk('overlays', '--state-dir', hostB, '--json')).out);
    expect(overlays.map((o: { family: string; vm: string; kind: string; layers: string[]; exported: boolean }) => [o.family, o.vm, o.kind, o.layers.length, o.exported])).toEqual([['fam', 'c1', 'clone', 2, true], ['fam', 'c2', 'clone', 1, true]]);
    expect(overlays[0].allocatedBytes).toBeGreaterThan(0);
    expect(overlays[0].base).toBe(`nbds://127.0.0.1:${f1.port}/xvda (fork f1)`);
    // the tables name the same things
    expect((await snowflockDisk('overlays', '--state-dir', hostA)).out).toMatch(/fam +g1 +xvda +clone +g1\/xvda +1 /);
    const missing = await snowflockDisk('slices', 'nofam', '--state-dir', hostA).catch((e) => e);
    expect(String(missing)).toMatch(/no disk family nofam/);
  });

  it('qemu-img check names a corrupt frozen overlay', async () => {
    const ok = await B.check();
    expect(ok).toHaveLength(1); // c1's first overlay, frozen as f2's slice
    expect(ok[0]).toMatchObject({ vm: 'c1', fork: 'f2', ok: true });
    expect((await snowflockDisk('check', 'fam', '--state-dir', hostB)).code).toBe(0);
    // break the L1 table's offset in the qcow2 header
    const fd = openSync(ok[0]!.file, 'r+');
    writeSync(fd, Buffer.from('00000000deadbe00', 'hex'), 0, 8, 40);
    closeSync(fd);
    const bad = await B.check();
    expect(bad[0]).toMatchObject({ vm: 'c1', fork: 'f2', ok: false });
    expect(bad[0]!.detail).toMatch(/qemu-img check.*(L1|corrupt|invalid)/i);
    const cli = await snowflockDisk('check', 'fam', '--state-dir', hostB);
    expect(cli.code).toBe(1);
    expect(cli.out).toMatch(/f2 +c1 +xvda +DAMAGED: qemu-img check: .*L1 table offset invalid/);
  });

  it.skipIf(!isRoot)('a full overlay filesystem: the clone gets ENOSPC, the parent and the slice are untouched, setup is refused by name', async (ctx) => {
    const small = join(root, 'small');
    mkdirSync(small);
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', small]).status !== 0) return ctx.skip(); // cannot mount a small filesystem here
    let C: DiskFamily | undefined;
    try {
      C = await DiskFamily.open({ stateDir: small, family: 'fam' });
      await C.addCloneDisk({ vm: 'c5', disk: 'xvda', source: { fork: 'f1', host: '127.0.0.1', port: f1.port, export: 'xvda', psk: f1.psk } });
      const e = await writeAt(uriOf(C, 'c5'), 0, pattern(8 * MiB, 41), scratch).catch((x) => x);
      expect(String(e)).toMatch(/No space left on device/);
      expect((await C.usage()).freeBytes).toBeLessThan(64 * 1024);
      // the parent and the slice do not notice
      expect((await readAll(tlsUri(scratch, '127.0.0.1', f1.port, 'xvda', f1.psk), scratch, 'slice-after-enospc')).equals(atFork)).toBe(true);
      await writeAt(uriOf(A, 'parent'), 15 * MiB, pattern(4096, 42), scratch);
      // the full clone goes; a new clone on a filesystem with no room for an overlay is
      // refused, naming the cause, and leaves nothing
      await C.removeVm('c5');
      const before = tree(C.dir);
      // room for the key file, not for the overlay's metadata: qemu-img meets ENOSPC
      const st = statfsSync(small);
      writeFileSync(join(small, 'filler'), Buffer.alloc(Number(st.bavail) * Number(st.bsize) - 16 * 1024));
      const e2 = await C.addCloneDisk({ vm: 'c6', disk: 'xvda', source: { fork: 'f1', host: '127.0.0.1', port: f1.port, export: 'xvda', psk: f1.psk } }).catch((x) => x);
      expect(e2).toBeInstanceOf(DiskError);
      expect(e2.code).toBe('no-space');
      expect(e2.message).toMatch(/^creating overlay .*c6\.xvda\.\d+\.qcow2: no space left for overlays: .*Could not write qcow2 header: No space left on device/);
      expect(tree(C.dir)).toEqual(before);
    } finally {
      rmSync(join(small, 'filler'), { force: true });
      await C?.shutdown().catch(() => undefined);
      execFileSync('umount', ['-l', small]);
    }
  });

  it('removing clones and releasing forks leaves each host with nothing but the parent\'s files', async () => {
    await B.releaseFork('f2');
    const { deleted } = await B.removeVm('c1');
    expect(deleted).toHaveLength(2);
    for (const f of deleted) expect(existsSync(f)).toBe(false);
    await A.removeVm('g1');
    expect((await graph(A)).objects).toEqual([]);
    const b = await B.shutdown();
    expect(b.kept).toEqual([]);
    expect(existsSync(join(hostB, 'fam'))).toBe(false);
    const a = await A.shutdown();
    // the parent's image and its overlays (its writes since the first fork) stay
    expect(a.kept[0]).toBe(image);
    expect(a.kept).toHaveLength(5); // xvda: image + 2 overlays; xvdb: image + 1 overlay
    expect(daemonsUnder(root)).toEqual([]);
    expect(readdirSync(join(hostA, 'fam'))).toEqual(['overlays']);
  });
});
