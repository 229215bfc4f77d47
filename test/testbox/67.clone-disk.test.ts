// Copy-on-write disks on Xen (docs/disks.md): the Debian guest boots with its root disk
// through a disk family (xl's disk with script=block-snowflock: qemu-storage-daemon, nbd-client,
// blkback), forks into two clones on this box, each on an overlay of its own over the fork's
// slice; a fork of a clone; a failed fork. Needs a box started with --debian-disk (the image is
// QEMU's virtio drive /dev/vda, snapshot=on, so nothing reaches the cached image).
//
// The guest runs images/testguest/programs/sf-commands.sh: a command written to its data/sf-cmd
// runs once and answers "SF-CMD <seq> rc=<rc> <output>" on its console. Before every read that
// must come from the disk, the guest drops its page cache: a clone starts with its parent's.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon, type XenStore } from '../../lib/xen/native.js';
import { waitForConsole } from '../../lib/xen/console.js';
import { cloneEager, type EagerCloneResult } from '../../lib/clone/eager.js';
import { ForkDisks, releaseForkDisks } from '../../lib/clone/fork-disks.js';
import { useFamily } from '../../lib/disk/use-family.js';
import { abandonDisks } from '../../lib/clone/capture-fork.js';
import { captureDescriptor } from '../../lib/descriptor/capture.js';
import { destroyClone, restoreDescriptor } from '../../lib/descriptor/restore.js';
import { DEFAULT_DISK_STATE_DIR } from '../../lib/disk/record.js';
import { vbdBackendPath } from '../../lib/xen/clone-vbd.js';
import { connectedNbd, destroyQuietly, diskPathMissing, domainIds, env, guestCommand, openXen, startDebianGuest, waitUntil } from './helpers.js';

const disk = process.env.SNOWFLOCK_DEBIAN_DISK;

function whyNot(): string | false {
  if (!disk) return 'no Debian guest disk (run with --debian-disk)';
  if (env.box !== 1) return 'single-host file runs on box 1';
  return diskPathMissing();
}
const skip = whyNot();

const FAMILY = `deb${process.pid}`;
const PARENT = `sfdeb-${process.pid}`;
const TARGET = `${FAMILY}:${PARENT}/xvda:${disk}`;
/** What the parent writes before the fork, and the Debian files read back beside it. */
const PRE_FILES = '/root/sf/pre.bin /root/sf/who /etc/os-release /usr/bin/dash';
const DROP_CACHES = 'sync; echo 3 > /proc/sys/vm/drop_caches';

const xc = openXen();
const xs: XenStore = new (loadAddon().XenStore)();
let parent: number | undefined;
let fork1: EagerCloneResult | undefined;
let forkOfClone: EagerCloneResult | undefined;
/** the parent's files at the fork, as sha256sum printed them */
let preHashes = '';
/** clone 1's own file, as sha256sum printed it */
let c1Own = '';

async function ok(name: string, domid: number, command: string): Promise<string> {
  const r = await guestCommand(xs, name, domid, command);
  assert.equal(r.rc, 0, `${name}: \`${command}\` failed: ${r.out}`);
  return r.out;
}

const familyState = () => useFamily(FAMILY, {}, async (f) => ({
  heads: f.heads().map((h) => `${h.kind}:${h.vm}/${h.disk}`).sort(),
  fronts: f.fronts().map((x) => x.fork),
  exported: f.slices().filter((s) => !s.released).map((s) => `${s.fork}:${s.vm}/${s.disk}`),
}));
const overlayFiles = () => {
  const dir = join(DEFAULT_DISK_STATE_DIR, FAMILY, 'overlays');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
};

before(async () => {
  if (skip) return;
  parent = await startDebianGuest(PARENT, 'sf-commands.sh', [`vdev=xvda, access=rw, script=block-snowflock, target=${TARGET}`]);
  await waitForConsole(PARENT, /SF-CMD ready vmid=0/, 120_000);
});

after(async () => {
  if (skip) return;
  for (const r of [forkOfClone, fork1]) {
    for (const c of r?.clones ?? []) await destroyClone(xc, xs, c.domid, c.uuid).catch((e: Error) => process.stderr.write(`# ${e.message}\n`));
    if (r?.disks.length) await releaseForkDisks(r.disks).catch((e: Error) => process.stderr.write(`# ${e.message}\n`));
  }
  await destroyQuietly(xc, parent); // xl destroy: block-snowflock remove detaches the parent's disk
  await useFamily(FAMILY, {}, (f) => f.shutdown()).catch((e: Error) => process.stderr.write(`# family ${FAMILY}: ${e.message}\n`));
  rmSync(join(DEFAULT_DISK_STATE_DIR, FAMILY), { recursive: true, force: true });
  xs.close();
  xc.close();
});

test('the parent\'s root disk goes through its disk family from boot (block-snowflock, nbd, blkback)', { skip }, async () => {
  const back = vbdBackendPath(parent!, 51712);
  assert.equal(xs.read(`${back}/snowflock-disk`), `${FAMILY}:${PARENT}/xvda`);
  assert.match(xs.read(`${back}/physical-device-path`) ?? '', /^\/dev\/nbd\d+$/);
  assert.equal(xs.read(`${back}/state`), '4', 'blkback connected');
  assert.deepEqual((await familyState()).heads, [`parent:${PARENT}/xvda`]);
  assert.match(await ok(PARENT, parent!, 'findmnt -n -o SOURCE,FSTYPE /'), /^\/dev\/xvda\s+ext4$/);
  preHashes = await ok(PARENT, parent!, `mkdir -p /root/sf && head -c 4194304 /dev/urandom > /root/sf/pre.bin && echo parent > /root/sf/who && ${DROP_CACHES} && sha256sum ${PRE_FILES}`);
  assert.equal(preHashes.split(/\s+/).length, 8, preHashes);
});

test('the parent forks into 2 clones; each reads the parent\'s pre-fork files byte-exact and writes its own', { skip }, async (t) => {
  fork1 = await cloneEager(xc, xs, parent!, { count: 2, progress: (m) => t.diagnostic(m) });
  t.diagnostic(`fork ${fork1.fork}: parent stopped ${fork1.pauseMs} ms; disks exported on ${fork1.disks.map((d) => `${d.host}:${d.port}`).join(', ')}`);
  assert.deepEqual(fork1.disks.map((d) => d.exports.map((e) => `${e.vm}/${e.disk}`)), [[`${PARENT}/xvda`]]);
  const devices = new Set([xs.read(`${vbdBackendPath(parent!, 51712)}/params`)]);
  for (const c of fork1.clones) {
    const back = vbdBackendPath(c.domid, 51712);
    assert.equal(xs.read(`${back}/snowflock-disk`), `${FAMILY}:${c.name}/xvda`);
    devices.add(xs.read(`${back}/params`));
    assert.equal(await ok(c.name, c.domid, `${DROP_CACHES} && sha256sum ${PRE_FILES}`), preHashes, `clone ${c.vmid} reads the fork's files byte-exact`);
    const own = await ok(c.name, c.domid, `echo clone-${c.vmid} > /root/sf/own && head -c 1048576 /dev/urandom > /root/sf/own.bin && ${DROP_CACHES} && cat /root/sf/own && sha256sum /root/sf/own.bin`);
    assert.match(own, new RegExp(`^clone-${c.vmid} [0-9a-f]{64} `));
    if (c.vmid === 1) c1Own = own;
  }
  assert.equal(devices.size, 3, `parent and clones each on their own nbd device: ${[...devices].join(' ')}`);
  assert.deepEqual((await familyState()).heads, [`clone:${fork1.clones[0]!.name}/xvda`, `clone:${fork1.clones[1]!.name}/xvda`, `parent:${PARENT}/xvda`].sort());
});

/** qemu-img with a TLS-PSK client object whose key directory holds `identity:key`; its output, or its error. */
function qemuImg(args: string[], psk: { identity: string; key: string }): { ok: boolean; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sf-psk-'));
  try {
    writeFileSync(join(dir, 'keys.psk'), `${psk.identity}:${psk.key}\n`, { mode: 0o600 });
    const out = execFileSync('qemu-img', [...args.slice(0, 1), '--object', `tls-creds-psk,id=c,endpoint=client,dir=${dir},username=${psk.identity}`, ...args.slice(1)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
    return { ok: true, out };
  } catch (e) {
    return { ok: false, out: `${(e as { stderr?: string }).stderr ?? ''}${(e as Error).message}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The first `mib` MiB of an image (qemu-img dd through `opts`), as a sha256; qemu-img's error otherwise. */
function headHash(opts: string, psk: { identity: string; key: string }, mib: number): string {
  const out = join(tmpdir(), `sf-head-${process.pid}-${Math.random().toString(36).slice(2)}.raw`);
  try {
    const r = qemuImg(['dd', '--image-opts', '-O', 'raw', 'bs=1M', `count=${mib}`, `if=${opts}`, `of=${out}`], psk);
    assert.ok(r.ok, `qemu-img dd: ${r.out}`);
    const data = readFileSync(out);
    assert.equal(data.length, mib << 20, 'qemu-img dd copied the whole head');
    return createHash('sha256').update(data).digest('hex');
  } finally {
    rmSync(out, { force: true });
  }
}

// The whole 1 GiB disk through TLS takes longer than a test may under TCG: the first 16 MiB
// (ext4's superblock, group descriptors and first inode tables) stand for it here; the host
// tests (test/host/disk/cow.test.ts) compare whole slices with nbdcopy and nbdinfo.
test('an outside NBD client reads the fork\'s slice byte-exact through its front (qemu-img over TLS-PSK against the frozen slice); another key is refused', { skip }, async () => {
  const d = fork1!.disks[0]!;
  const { socket, slice } = await useFamily(FAMILY, {}, async (f) => ({ socket: f.nbdSocket, slice: f.slices().find((x) => x.fork === d.fork && x.disk === 'xvda') }));
  assert.ok(slice?.export, `fork ${d.fork} has its slice of xvda exported on the family socket`);
  const front = `driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=${d.host},file.server.port=${d.port},file.export=xvda,file.tls-creds=c`;
  // The family's own read-only node of the slice: the disk as it was at the fork, whatever the parent wrote since.
  const frozen = `driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=${socket},file.export=${slice.export}`;
  assert.equal(headHash(front, d.psk, 16), headHash(frozen, d.psk, 16), 'the front serves what the slice holds');
  const info = qemuImg(['info', '--output=json', '--image-opts', front], d.psk);
  assert.ok(info.ok, info.out);
  assert.equal((JSON.parse(info.out) as { 'virtual-size': number })['virtual-size'], d.exports[0]!.sizeBytes, 'the front exports the slice\'s whole size');
  const stranger = qemuImg(['info', '--image-opts', front], { identity: d.psk.identity, key: 'ab'.repeat(32) });
  assert.equal(stranger.ok, false, 'a client with another key reads nothing');
  assert.match(stranger.out, /TLS|handshake|psk|Failed to/i);
});

test('the parent\'s post-fork writes reach no clone, and no clone\'s writes reach the parent or a sibling', { skip }, async () => {
  await ok(PARENT, parent!, `echo after-the-fork > /root/sf/post && ${DROP_CACHES}`);
  assert.equal(await ok(PARENT, parent!, `${DROP_CACHES} && ls /root/sf && cat /root/sf/who`), 'post pre.bin who parent');
  for (const c of fork1!.clones) {
    assert.equal(await ok(c.name, c.domid, `${DROP_CACHES} && ls /root/sf && cat /root/sf/own`), `own own.bin pre.bin who clone-${c.vmid}`);
  }
});

test('a fork of a clone sees its parent clone\'s writes and not its sibling\'s', { skip }, async (t) => {
  const [c1] = fork1!.clones;
  await ok(c1!.name, c1!.domid, `echo before > /root/sf/c1-before && ${DROP_CACHES}`);
  forkOfClone = await cloneEager(xc, xs, c1!.domid, { count: 1, progress: (m) => t.diagnostic(m) });
  const [g] = forkOfClone.clones;
  assert.deepEqual(forkOfClone.disks.map((d) => d.exports.map((e) => `${e.vm}/${e.disk}`)), [[`${c1!.name}/xvda`]]);
  await ok(c1!.name, c1!.domid, `echo after > /root/sf/c1-after && ${DROP_CACHES}`);
  assert.equal(await ok(g!.name, g!.domid, `${DROP_CACHES} && ls /root/sf && cat /root/sf/own && sha256sum /root/sf/own.bin`), `c1-before own own.bin pre.bin who ${c1Own}`);
  assert.equal(await ok(g!.name, g!.domid, `sha256sum ${PRE_FILES}`), preHashes);
});

test('destroying clones (by snowflock and by xl) and releasing forks leaves no overlay, nbd device, backend or front of theirs', { skip }, async () => {
  const clones = [...forkOfClone!.clones, ...fork1!.clones];
  for (const c of forkOfClone!.clones) await destroyClone(xc, xs, c.domid, c.uuid);
  await releaseForkDisks(forkOfClone!.disks);
  // clone 1 by snowflock, clone 2 by xl (its vbd's /libxl directory: libxl runs block-snowflock remove)
  const [c1, c2] = fork1!.clones;
  await destroyClone(xc, xs, c1!.domid, c1!.uuid);
  execFileSync('xl', ['destroy', String(c2!.domid)], { timeout: 120_000 });
  await waitUntil(`clone ${c2!.name} gone`, () => !domainIds(xc).includes(c2!.domid), 60_000, 250);
  await releaseForkDisks(fork1!.disks);
  forkOfClone = undefined;
  fork1 = undefined;
  for (const c of clones) {
    assert.ok(!domainIds(xc).includes(c.domid) || xc.domainInfo(c.domid).dying, `clone ${c.name} destroyed`);
    assert.equal(xs.directory(`/local/domain/0/backend/vbd/${c.domid}`), null);
  }
  assert.deepEqual(await familyState(), { heads: [`parent:${PARENT}/xvda`], fronts: [], exported: [] });
  assert.deepEqual(connectedNbd().length, 1, `only the parent's nbd device: ${connectedNbd().join(' ')}`);
  assert.ok(overlayFiles().every((f) => f.startsWith(`${PARENT}.`)), `only the parent's layers: ${overlayFiles().join(' ')}`);
  // the parent runs on, on its own disk
  assert.equal(await ok(PARENT, parent!, `${DROP_CACHES} && cat /root/sf/post`), 'after-the-fork');
});

test('a failed fork leaves no slice export, clone overlay, nbd device, backend or domain behind', { skip }, async (t) => {
  const before = { domains: domainIds(xc).sort(), nbd: connectedNbd(), state: await familyState() };
  const parentLayers = () => overlayFiles().filter((f) => f.startsWith(`${PARENT}.`)).length;

  // 1. The capture fails after the freeze: the parent runs on (on its new layer), the slice is released.
  let fd: ForkDisks | undefined;
  const layers = parentLayers();
  const failed = await captureDescriptor(xc, xs, parent!, {
    disks: (vbds) => {
      fd = new ForkDisks('failed-after-freeze', vbds);
      return { prepare: () => fd!.prepare(), freeze: async () => { await fd!.freeze(); throw new Error('injected failure after the freeze'); } };
    },
  }).catch((e: unknown) => abandonDisks(fd, e));
  assert.match(String(failed), /injected failure after the freeze/);
  assert.equal(xc.domainInfo(parent!).shutdownReason, undefined, 'the parent runs on');
  assert.deepEqual(await familyState(), before.state);
  assert.equal(parentLayers(), layers + 1, 'the parent writes to its new layer');

  // 2. A clone that cannot open its slice (a wrong key): nothing of it stays, and the fork is taken back.
  let fd2: ForkDisks | undefined;
  const work = join('/tmp', `sf-67-${process.pid}`);
  execFileSync('mkdir', ['-p', '-m', '700', work]);
  const cap = await captureDescriptor(xc, xs, parent!, { memoryImage: join(work, 'p.mem'), keepParentStopped: true, disks: (vbds) => (fd2 = new ForkDisks('failed-clone', vbds)) });
  try {
    const exported = await fd2!.exportAll('127.0.0.1');
    const wrong = exported.map((e) => ({ ...e, psk: { ...e.psk, key: 'ab'.repeat(32) } }));
    await assert.rejects(
      restoreDescriptor(xc, xs, cap.descriptor, { memoryImage: join(work, 'p.mem'), vmid: 9, name: `${PARENT}-bad`, start: false, disks: wrong }),
      /refused this key|TLS/,
    );
  } finally {
    cap.resumeParent();
    t.diagnostic(`taking back: ${(await fd2!.abandon()).join('; ') || 'all'}`);
    rmSync(work, { recursive: true, force: true });
  }
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  await waitUntil('the failed clone\'s domain gone', () => same(domainIds(xc).sort(), before.domains), 30_000, 250);
  assert.deepEqual(connectedNbd(), before.nbd, 'no nbd device left');
  assert.deepEqual(await familyState(), before.state, 'no head, front or slice export left');
  assert.ok(overlayFiles().every((f) => f.startsWith(`${PARENT}.`)), `no clone overlay left: ${overlayFiles().join(' ')}`);
  assert.equal(await ok(PARENT, parent!, `${DROP_CACHES} && cat /root/sf/who`), 'parent');
});
