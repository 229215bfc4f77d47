// Faults of the copy-on-write disks, made for real with real qemu-storage-daemons and no Xen:
// two "hosts" (state directories) as in cow.test.ts, a parent's disk forked (f1) with two clones
// on the other host, and a fork of clone c1 (g) with a clone g1 back on the parent's host. A
// daemon killed mid-write, a daemon killed with its front, a full overlay filesystem, a
// truncated and a scribbled overlay, another fork's key or export, garbage on the NBD sockets:
// each is refused or reported by name, and every other disk reads back what it should (sha256
// of each MiB) and still takes writes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DiskFamily, type CloneSource, type ForkExport } from '../../../lib/disk/family.js';
import { DiskError } from '../../../lib/disk/errors.js';
import { listOverlays } from '../../../lib/disk/list.js';
import { checkOverlay } from '../../../lib/disk/qemu-img.js';
import { CMD, OPT, RawNbd } from './raw-nbd.js';
import { daemonGraph, daemonsUnder, haveTools, nbdinfo, pattern, qemuIo, qemuIoSession, readAll, removeHosts, snowflockDisk, testHosts, tlsUri, tree, unixUri, writeAt, type TestHosts } from './harness.js';

const MiB = 1 << 20;
const SIZE = 12 * MiB;
const CLUSTER = 64 * 1024;
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** sha256 of each MiB: a difference names the region. */
const regionSums = (b: Buffer) => Array.from({ length: Math.ceil(b.length / MiB) }, (_, i) => `${i}M ${createHash('sha256').update(b.subarray(i * MiB, (i + 1) * MiB)).digest('hex').slice(0, 16)}`);

/** SIGKILL, then wait until the process is gone (reaped or a zombie). */
async function killHard(pid: number, under: string): Promise<void> {
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 500 && daemonsUnder(under).includes(pid); i++) await sleep(10);
}

describe.skipIf(!haveTools)('disk faults (qemu-storage-daemon, NBD, TLS-PSK)', () => {
  let h: TestHosts;
  let A: DiskFamily; // the parent's family, on h.hostA
  let B: DiskFamily; // the clones' family, on h.hostB
  let f1: ForkExport;
  let g: ForkExport;
  const logs: string[] = [];
  const log = (m: string) => void logs.push(m);
  /** each disk's family (reopened families replace A and B) and what it must read */
  const disks: Record<string, { on: () => DiskFamily; want: Buffer }> = {};

  const uriOf = (f: DiskFamily, vm: string) => unixUri(f.nbdSocket, `${vm}/xvda`);
  const source = (e: ForkExport, over: Partial<CloneSource> = {}): CloneSource => ({ fork: e.fork, host: '127.0.0.1', port: e.port, export: 'xvda', psk: e.psk, ...over });
  const open = (stateDir: string) => DiskFamily.open({ stateDir, family: 'fam', log });

  async function write(vm: string, offset: number, data: Buffer): Promise<void> {
    const d = disks[vm]!;
    await writeAt(uriOf(d.on(), vm), offset, data, h.scratch);
    data.copy(d.want, offset);
  }

  /** A whole disk, read with nbdcopy (its copy removed: the test reads some 40 of them). */
  async function readDisk(uri: string, tag: string): Promise<Buffer> {
    const b = await readAll(uri, h.scratch, tag);
    rmSync(join(h.scratch, `copy-${tag}.raw`));
    return b;
  }

  /** Each disk reads exactly what it should (read all at once). */
  async function expectDisks(tag: string): Promise<void> {
    const vms = Object.keys(disks);
    const got = await Promise.all(vms.map((vm) => readDisk(uriOf(disks[vm]!.on(), vm), `${vm}-${tag}`)));
    for (const [i, vm] of vms.entries()) expect(regionSums(got[i]!), `${vm} ${tag}`).toEqual(regionSums(disks[vm]!.want));
  }

  /** Each disk still takes a write and reads it back with everything else. */
  async function disksWork(tag: string, seed: number): Promise<void> {
    for (const [i, vm] of Object.keys(disks).entries()) await write(vm, SIZE - MiB + i * CLUSTER, pattern(CLUSTER, seed + i));
    await expectDisks(tag);
  }

  beforeAll(async () => {
    h = testHosts('sffault', SIZE);
    A = await open(h.hostA);
    B = await open(h.hostB);
    await A.addParentDisk({ vm: 'parent', disk: 'xvda', image: h.image, format: 'raw' });
    await A.freeze({ fork: 'f1', vm: 'parent' });
    f1 = await A.exportFork({ fork: 'f1', host: '127.0.0.1' });
    disks.parent = { on: () => A, want: pattern(SIZE, 1) };
    for (const vm of ['c1', 'c2']) {
      await B.addCloneDisk({ vm, disk: 'xvda', source: source(f1) });
      disks[vm] = { on: () => B, want: pattern(SIZE, 1) };
    }
    await write('parent', 0, pattern(MiB, 2));
    await write('c1', MiB, pattern(CLUSTER, 3));
    await write('c2', 4 * MiB, pattern(MiB, 4));
    // a fork of c1, and its clone on the parent's host
    await B.freeze({ fork: 'g', vm: 'c1' });
    g = await B.exportFork({ fork: 'g', host: '127.0.0.1' });
    await A.addCloneDisk({ vm: 'g1', disk: 'xvda', source: source(g) });
    disks.g1 = { on: () => A, want: Buffer.from(disks.c1!.want) };
    await write('g1', 5 * MiB, pattern(CLUSTER, 5));
  });

  afterAll(() => removeHosts(h?.root, [B, A]));

  it('the family daemon killed mid-write: the writer gets an I/O error; reopened, the daemon is relaunched with every disk, slice and export of the record, flushed writes and the fork read back exactly, qemu-img check passes', async () => {
    const killed = B.pid;
    const c1 = B.heads().find((x) => x.vm === 'c1')!;
    const top = c1.layers.at(-1)!.file;
    const io = qemuIoSession(uriOf(B, 'c1'));
    for (let i = 0; i < 4; i++) {
      expect(await io.run(`write -P ${0x10 + i} ${(2 + i) * MiB} 1M`)).toMatch(/wrote 1048576\/1048576/);
      expect(await io.run('flush')).not.toMatch(/failed/);
      Buffer.alloc(MiB, 0x10 + i).copy(disks.c1!.want, (2 + i) * MiB);
    }
    // a 4 MiB write to the end of the disk; the daemon dies once its overlay has grown by 1 MiB of it
    const grown = statSync(top).size + MiB;
    io.send(`write -P 0x77 ${8 * MiB} ${SIZE - 8 * MiB}`);
    const deadline = Date.now() + 10_000;
    while (statSync(top).size < grown && Date.now() < deadline); // busy: the write is under way
    await killHard(killed, h.root);
    io.send(`write -P 0x5a ${6 * MiB} 64k`);
    io.send('flush');
    const out = await io.end();
    console.log(`qemu-io at the kill: ${out.split('\n').filter((l) => /wrote|failed/.test(l)).slice(-3).join(' | ')}`);
    expect(out).toMatch(/write failed: Input\/output error/);
    expect(out).not.toMatch(/wrote 65536\/65536 bytes at offset 6291456/);

    B.close();
    B = await open(h.hostB);
    expect(B.pid).not.toBe(killed);
    expect(logs).toContainEqual(expect.stringMatching(new RegExp(`storage daemon ${killed} is gone; reopening its disks`)));
    expect(B.heads().map((x) => [x.export, x.fault])).toEqual([['c1/xvda', undefined], ['c2/xvda', undefined]]);
    expect(B.slices('g')).toMatchObject([{ export: 'slice/g/c1/xvda', file: c1.layers[0]!.file }]);
    // the overlay written at the kill and the slice under it (c1's first overlay) pass qemu-img check
    for (const l of c1.layers) {
      expect(await checkOverlay(l.file)).toMatchObject({ ok: true, corruptions: 0, leaks: 0 });
      expect(spawnSync('qemu-img', ['check', '-U', '-q', l.file]).status).toBe(0);
    }
    // flushed writes are all there; of the write in flight each cluster is old or new; the rest is the fork's
    const got = await readDisk(uriOf(B, 'c1'), 'c1-after-kill');
    const torn: number[] = [];
    let landed = 0;
    for (let off = 8 * MiB; off < SIZE; off += CLUSTER) {
      const c = got.subarray(off, off + CLUSTER);
      if (c.equals(Buffer.alloc(CLUSTER, 0x77))) landed++;
      else if (!c.equals(disks.c1!.want.subarray(off, off + CLUSTER))) torn.push(off);
    }
    console.log(`of the ${(SIZE - 8 * MiB) / MiB} MiB in flight, ${landed} of ${(SIZE - 8 * MiB) / CLUSTER} clusters landed`);
    expect(torn).toEqual([]);
    got.copy(disks.c1!.want, 8 * MiB, 8 * MiB, SIZE);
    // every disk reads what it should: c1 and c2 from the relaunched daemon, g1 through fork g's front (which reconnected)
    await disksWork('after-kill', 60);
  });

  it('the parent\'s family daemon and its front killed together: the relaunched family starts the front at its address with its key, and a clone\'s read that waited for it completes', async () => {
    const front = A.fronts().find((f) => f.fork === 'f1')!;
    const killed = A.pid;
    await killHard(front.pid, h.root);
    await killHard(killed, h.root);
    A.close();
    // c2 reads while its fork's front is gone: its NBD node waits for the front instead of failing
    const reading = readDisk(uriOf(B, 'c2'), 'c2-waiting');
    await sleep(300);
    A = await open(h.hostA);
    const back = A.fronts().find((f) => f.fork === 'f1')!;
    expect(back).toMatchObject({ host: front.host, port: front.port, identity: front.identity });
    expect(back.pid).not.toBe(front.pid);
    expect(logs).toContainEqual(`family fam: front of fork f1 restarted on 127.0.0.1:${f1.port}`);
    expect(regionSums(await reading)).toEqual(regionSums(disks.c2!.want));
    expect((await nbdinfo(tlsUri(h.scratch, '127.0.0.1', f1.port, 'xvda', f1.psk))).ok).toBe(true);
    expect(A.heads().map((x) => [x.export, x.fault])).toEqual([['parent/xvda', undefined], ['g1/xvda', undefined]]);
    for (const l of A.heads().flatMap((x) => x.layers)) expect(await checkOverlay(l.file)).toMatchObject({ ok: true, leaks: 0 });
    await disksWork('after-parent-kill', 70);
  });

  it('a scribbled and a truncated overlay: the relaunched family refuses each by file and damage, lists them, and opens the rest', async () => {
    for (const [i, vm] of ['c3', 'c4'].entries()) {
      await B.addCloneDisk({ vm, disk: 'xvda', source: source(f1) });
      await writeAt(uriOf(B, vm), 0, pattern(2 * MiB, 80 + i), h.scratch);
    }
    const fileOf = (vm: string) => B.heads().find((x) => x.vm === vm)!.layers[0]!.file;
    const c3 = fileOf('c3');
    const c4 = fileOf('c4');
    await killHard(B.pid, h.root);
    B.close();
    const fd = openSync(c3, 'r+');
    writeSync(fd, Buffer.from('SNOW'), 0, 4, 0); // the qcow2 magic
    closeSync(fd);
    truncateSync(c4, 256 * 1024); // its data clusters and tables beyond the first ones are gone

    B = await open(h.hostB);
    const fault = (vm: string) => B.heads().find((x) => x.vm === vm)!.fault;
    expect(fault('c3')).toMatchObject({ code: 'corrupt-overlay' });
    expect(fault('c3')!.message).toBe(`overlay ${c3} of c3/xvda is damaged: qemu-img check: qemu-img: Could not open '${c3}': Image is not in qcow2 format`);
    expect(fault('c4')).toMatchObject({ code: 'corrupt-overlay' });
    expect(fault('c4')!.message).toMatch(new RegExp(`^overlay ${c4} of c4/xvda is damaged: qemu-img check: \\d+ corruptions, .*exceeding the end of the file`));
    expect(fault('c1')).toBeUndefined();
    expect(fault('c2')).toBeUndefined();
    // the listing `snowflock disk overlays` prints says so
    const rows = Object.fromEntries((await listOverlays(h.hostB)).map((r) => [r.vm, r]));
    expect(rows.c3).toMatchObject({ exported: false, fault: { code: 'corrupt-overlay', message: fault('c3')!.message } });
    expect(rows.c4).toMatchObject({ exported: false, fault: { code: 'corrupt-overlay' } });
    expect(rows.c1).toMatchObject({ exported: true });
    expect(rows.c1!.fault).toBeUndefined();
    expect((await snowflockDisk('overlays', '--state-dir', h.hostB)).out).toContain(`FAULT fam c3/xvda (corrupt-overlay): overlay ${c3} of c3/xvda is damaged`);
    // a damaged disk is not forked, and not reachable
    await expect(B.freeze({ fork: 'h', vm: 'c3' })).rejects.toMatchObject({ code: 'corrupt-overlay', message: expect.stringMatching(/^c3\/xvda is not open: overlay /) });
    expect((await nbdinfo(uriOf(B, 'c4'))).ok).toBe(false);
    await disksWork('after-damage', 80);
    // they go like any clone, files and all, and the name can be used again
    expect((await B.removeVm('c3')).deleted).toEqual([c3]);
    expect((await B.removeVm('c4')).deleted).toEqual([c4]);
    expect([existsSync(c3), existsSync(c4)]).toEqual([false, false]);
    await B.addCloneDisk({ vm: 'c3', disk: 'xvda', source: source(f1) });
    expect(regionSums(await readDisk(uriOf(B, 'c3'), 'c3-again'))).toEqual(regionSums(pattern(SIZE, 1)));
    await B.removeVm('c3');
  });

  it.skipIf(!isRoot)('a full overlay filesystem: the writer gets ENOSPC, the listing names the overlay as no-space, and the parent, the slice and the sibling clones are untouched', async (ctx) => {
    const hostC = join(h.root, 'c');
    const overlays = join(hostC, 'fam', 'overlays');
    mkdirSync(overlays, { recursive: true });
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', overlays]).status !== 0) return ctx.skip('cannot mount a tmpfs here');
    let C: DiskFamily | undefined;
    try {
      C = await open(hostC);
      await C.addCloneDisk({ vm: 'c5', disk: 'xvda', source: source(f1) });
      const mine = pattern(MiB, 90);
      await writeAt(uriOf(C, 'c5'), 0, mine, h.scratch);
      expect((await listOverlays(hostC))[0]!.fault).toBeUndefined();
      const e = await writeAt(uriOf(C, 'c5'), 2 * MiB, pattern(9 * MiB, 91), h.scratch).catch((x: Error) => x);
      expect(String(e)).toMatch(/write failed: No space left on device/);
      const [row] = await listOverlays(hostC);
      expect(row!.fault).toMatchObject({ code: 'no-space' });
      expect(row!.fault!.message).toMatch(new RegExp(`^the filesystem holding ${overlays}/c5\\.xvda\\.\\d+\\.qcow2 is full \\(\\d+ bytes free\\): writes that allocate get ENOSPC`));
      const json = JSON.parse((await snowflockDisk('overlays', '--state-dir', hostC, '--json')).out);
      expect(json.overlays[0].fault.code).toBe('no-space');
      // what c5 wrote before it filled up is intact
      const c5 = await readDisk(uriOf(C, 'c5'), 'c5-full');
      expect(c5.subarray(0, MiB).equals(mine)).toBe(true);
      // the slice, the parent and the siblings do not notice
      expect(regionSums(await readDisk(tlsUri(h.scratch, '127.0.0.1', f1.port, 'xvda', f1.psk), 'slice-full'))).toEqual(regionSums(pattern(SIZE, 1)));
      await disksWork('after-enospc', 90);
      // trimmed, the overlay gives its room back and the fault is gone
      await qemuIo(uriOf(C, 'c5'), [`discard 0 ${SIZE}`]);
      expect((await listOverlays(hostC))[0]!.fault).toBeUndefined();
      await qemuIo(uriOf(C, 'c5'), [`write -P 0x33 ${4 * MiB} 1M`, `read -P 0x33 ${4 * MiB} 1M`]);
    } finally {
      await C?.shutdown().catch(() => undefined);
      spawnSync('umount', ['-l', overlays]);
    }
  });

  describe('another fork', () => {
    let f2: ForkExport;

    it('a slice of another fork: fork f1\'s front asked with f2\'s key or for f2\'s slice, or f1\'s key given for f2, is refused by name and leaves nothing', async () => {
      await A.freeze({ fork: 'f2', vm: 'parent' });
      f2 = await A.exportFork({ fork: 'f2', host: '127.0.0.1' });
      const before = { graph: await daemonGraph(B.daemon.query), files: tree(B.dir) };
      const refused = (over: Partial<CloneSource>, e: ForkExport = f2) => B.addCloneDisk({ vm: 'x1', disk: 'xvda', source: source(e, over) }).then(() => undefined, (x: unknown) => x as DiskError);
      const e1 = await refused({ port: f1.port });
      expect(e1).toBeInstanceOf(DiskError);
      expect(e1).toMatchObject({ code: 'wrong-psk', message: expect.stringMatching(new RegExp(`^opening export xvda of fork f2 at 127\\.0\\.0\\.1:${f1.port}: the slice server refused this key`)) });
      const e2 = await refused({ export: 'slice/f2/parent/xvda' }, f1);
      expect(e2).toMatchObject({ code: 'unknown-export', message: expect.stringMatching(/^opening export slice\/f2\/parent\/xvda of fork f1 .*: the slice server has no export of that name/) });
      const e3 = await refused({ psk: f1.psk });
      expect(e3).toMatchObject({ code: 'wrong-psk', message: 'opening export xvda of fork f2: the key given is for identity snowflock-f1, not fork f2\'s (snowflock-f2)' });
      expect(await daemonGraph(B.daemon.query)).toEqual(before.graph);
      expect(tree(B.dir)).toEqual(before.files);
      // with its own key and front, f2's clone reads the parent as it was at f2
      await B.addCloneDisk({ vm: 'x2', disk: 'xvda', source: source(f2) });
      expect(regionSums(await readDisk(uriOf(B, 'x2'), 'x2'))).toEqual(regionSums(disks.parent!.want));
      await B.removeVm('x2');
    });

    it('a client that is not of this fork: another fork\'s identity or key is refused by the front (libnbd and a clone\'s daemon)', async () => {
      const front = (psk: { identity: string; key: string }) => nbdinfo(tlsUri(h.scratch, '127.0.0.1', f1.port, 'xvda', psk));
      for (const psk of [f2.psk, { identity: f1.psk.identity, key: f2.psk.key }, { identity: f2.psk.identity, key: f1.psk.key }]) {
        const r = await front(psk);
        expect(r.ok, `${psk.identity} with ${psk.key.slice(0, 8)}`).toBe(false);
        expect(r.out).toMatch(/TLS|handshake/i);
      }
      expect((await front(f1.psk)).ok).toBe(true);
      const e = await B.addCloneDisk({ vm: 'x3', disk: 'xvda', source: source(f1, { psk: { identity: f1.psk.identity, key: f2.psk.key } }) }).catch((x: DiskError) => x);
      expect(e).toMatchObject({ code: 'wrong-psk', message: expect.stringMatching(/^opening export xvda of fork f1 at .*: the slice server refused this key \(a wrong PSK, or a client that is not of this fork\): blockdev-add: .*TLS/) });
      await A.releaseFork('f2');
    });
  });

  it('garbage on the NBD sockets: each bad request is refused by name or its connection dropped, and other clients read on', async () => {
    const sock = { path: B.nbdSocket };
    const conn = async (name?: string) => {
      const c = await RawNbd.connect(sock);
      if (name) await c.handshake(name);
      return c;
    };
    // other clients stay connected throughout: half-done handshakes held open
    const idle = await Promise.all(Array.from({ length: 16 }, () => RawNbd.connect(sock)));
    // bytes instead of the handshake; an option claiming 4 GiB of data
    let c = await conn();
    c.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(await c.closesWithin(3000)).toBe(true);
    c = await conn();
    await c.greeting();
    c.send(Buffer.from([0, 0, 0, 3]));
    c.rawOption(OPT.go, 0xfffffff0, Buffer.alloc(4096));
    expect(await c.closesWithin(3000)).toBe(true);
    // requests the server cannot follow: it says why, then drops the connection
    c = await conn('c2/xvda');
    c.request({ type: CMD.read, offset: 0n, length: 4096, magic: 0xdeadbeef });
    expect(await c.reply()).toMatchObject({ error: 22, message: 'invalid magic (got 0xdeadbeef)' });
    expect(await c.closesWithin(3000)).toBe(true);
    c = await conn('c2/xvda');
    c.request({ type: CMD.write, offset: 0n, length: 0xffffffff });
    expect(await c.reply()).toMatchObject({ error: 22, message: expect.stringMatching(/^len \(4294967295 ?\) is larger than max len/) });
    expect(await c.closesWithin(3000)).toBe(true);
    // requests it can refuse and stay in step: it says why and answers the next one
    c = await conn('c2/xvda');
    const bad: [Parameters<RawNbd['request']>[0], RegExp][] = [
      [{ type: CMD.read, offset: 0n, length: 0xffffffff }, /^len \(4294967295 ?\) is larger than max len/],
      [{ type: CMD.read, offset: 1n << 40n, length: 4096 }, /^operation past EOF; From: 1099511627776, Len: 4096, Size: 12582912/],
      [{ type: CMD.read, offset: 0xffffffffffffff00n, length: 4096 }, /^operation past EOF/],
      [{ type: CMD.write, offset: BigInt(SIZE), length: 4096, payload: Buffer.alloc(4096, 0xee) }, /^operation past EOF/],
      [{ type: 99, offset: 0n, length: 0 }, /^invalid request type \(99\)/],
    ];
    for (const [i, [req, why]] of bad.entries()) {
      c.request({ ...req, handle: BigInt(100 + i) });
      const r = await c.reply();
      expect(r, String(why)).toMatchObject({ handle: BigInt(100 + i), error: 22, message: expect.stringMatching(why) });
    }
    c.request({ type: CMD.read, offset: BigInt(4 * MiB), length: 4096, handle: 7n });
    const ok = await c.reply();
    expect(ok).toMatchObject({ handle: 7n, error: 0 });
    expect(ok!.data.equals(disks.c2!.want.subarray(4 * MiB, 4 * MiB + 4096))).toBe(true);
    c.close();
    // the front speaks TLS only: garbage is dropped, a plain handshake refused
    const t = await RawNbd.connect({ host: '127.0.0.1', port: f1.port });
    t.send(Buffer.alloc(64 * 1024, 0xff));
    expect(await t.closesWithin(3000)).toBe(true);
    const plain = await RawNbd.connect({ host: '127.0.0.1', port: f1.port });
    await expect(plain.handshake('xvda')).rejects.toThrow(/refused \(5\)/); // NBD_REP_ERR_TLS_REQD
    plain.close();
    // every idle client is still connected, and the disks read right
    expect(idle.filter((x) => x.closed)).toEqual([]);
    for (const x of idle) x.close();
    await qemuIo(uriOf(B, 'c1'), ['read -P 0x10 2M 1M', 'read -P 0x13 5M 1M'], { readOnly: true });
    await disksWork('after-garbage', 100);
  });

  it('after all that, removing the clones and releasing the forks leaves each host with the parent\'s files only and no daemon', async () => {
    await A.removeVm('g1');
    await B.releaseFork('g');
    for (const vm of ['c1', 'c2']) await B.removeVm(vm);
    expect((await B.shutdown()).kept).toEqual([]);
    const { kept } = await A.shutdown();
    expect(kept[0]).toBe(h.image);
    expect(daemonsUnder(h.root)).toEqual([]);
    expect(readdirSync(join(h.hostA, 'fam'))).toEqual(['overlays']);
    expect(existsSync(join(h.hostB, 'fam'))).toBe(false);
  });
});
