// Copy-on-write disk benchmark, run inside a Xen dom0 with the Debian guest's disk and the disk
// path (the test box started with --debian-disk: `scripts/bench/disk`). Everything is measured
// in this one run; it prints ratios, never absolute claims (test box timings are emulated).
//   1. 4 KiB sequential and random reads and writes (fio, O_DIRECT, in the guest) through a
//      clone's overlay vs the same image attached as a plain local disk (blkback straight on
//      the block device, no family), and through the parent's family before any fork
//   2. bytes a clone fetches from its fork's front while it runs a read-mostly workload, vs the
//      disk's size; and 4 clones of one fork vs one clone
//   3. fork time of the Debian guest with its disk: end to end vs the same less its disk steps
//      (prepare, freeze, export, the clones' attaches)
// The guest runs images/testguest/programs/sf-commands.sh (commands through data/sf-cmd).
import { chmodSync, readFileSync, rmSync, writeFileSync, mkdtempSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadAddon } from '../../lib/xen/native.js';
import { waitForConsole } from '../../lib/xen/console.js';
import { cloneEager, type EagerCloneResult } from '../../lib/clone/eager.js';
import { releaseForkDisks } from '../../lib/clone/fork-disks.js';
import { describeDiskTransport, type BlockTransport } from '../../lib/clone/disk-transport.js';
import { destroyClone } from '../../lib/descriptor/restore.js';
import { useFamily } from '../../lib/disk/use-family.js';
import { DEFAULT_DISK_STATE_DIR } from '../../lib/disk/record.js';
import { destroyQuietly, diskPathMissing, guestCommand, openXen, startDebianGuest } from '../../test/testbox/helpers.js';
import { reportMissingRows } from './missing-rows.js';

const say = (s: string) => process.stdout.write(`snowflock-bench: ${s}\n`);
const xc = openXen();
const xs = new (loadAddon().XenStore)();
const work = mkdtempSync(join(tmpdir(), 'sf-bench-'));
const image = process.env.SNOWFLOCK_DEBIAN_DISK;
const FAMILY = `bench${process.pid}`;
const PARENT = `sfbench-${process.pid}`;
/** fio's file in the guest: written before the fork, so a clone reads it from the fork's slice */
const FIO_FILE = '/root/sf/fio.dat';
const FIO_MIB = 64;
const FIO_SECONDS = 5;
const DROP_CACHES = 'sync; echo 3 > /proc/sys/vm/drop_caches';
/**
 * Read-mostly: Node starts and the package database is read; one small write. Small, as every
 * read a clone sends its front waits out QEMU 7.2's Nagle stall (docs/disks.md, Benchmark).
 */
const WORKLOAD = 'node -e 0 2>/dev/null && dpkg -l | wc -l > /root/sf/workload';
const XVDA = 51712;

const JOBS = [['sequential read', 'read'], ['random read', 'randread'], ['sequential write', 'write'], ['random write', 'randwrite']] as const;
type Job = (typeof JOBS)[number][0];
type FioRun = Record<Job, { bytesPerSec: number; iops: number }>;

/** rows that could not be measured, with why: named on the last line, and the bench exits 1 */
const missing: string[] = [];
/** An error's first line: a row's reason stays on the one line the host reads. */
const why = (e: unknown) => ((e as Error).message ?? String(e)).split('\n')[0]!;

async function run(name: string, domid: number, command: string, timeoutMs?: number): Promise<string> {
  const r = await guestCommand(xs, name, domid, command, timeoutMs);
  if (r.rc !== 0) throw new Error(`${name}: \`${command}\` failed (rc ${r.rc}): ${r.out.slice(0, 500)}`);
  return r.out;
}

async function debianGuest(name: string, disk: string): Promise<number> {
  const domid = await startDebianGuest(name, 'sf-commands.sh', [disk]);
  await waitForConsole(name, /SF-CMD ready vmid=0/, 120_000);
  return domid;
}

/** The four 4 KiB fio jobs on FIO_FILE (written first if missing); throws naming a guest without fio. */
async function fio(name: string, domid: number): Promise<FioRun> {
  if ((await guestCommand(xs, name, domid, 'command -v fio')).rc !== 0) throw new Error('no fio in the Debian guest (images/debian/packages.txt lists it: rebuild the image)');
  await run(name, domid, `mkdir -p /root/sf && { [ -s ${FIO_FILE} ] || dd if=/dev/urandom of=${FIO_FILE} bs=1M count=${FIO_MIB} conv=fsync 2>&1; }`, 600_000);
  const out = {} as FioRun;
  for (const [job, rw] of JOBS) {
    // Only the figures, read then write, from fio's JSON: a short line on the guest's console.
    const line = await run(name, domid, `fio --name=sf --filename=${FIO_FILE} --size=${FIO_MIB}M --bs=4k --direct=1 --ioengine=psync --rw=${rw} `
      + `--runtime=${FIO_SECONDS} --time_based --output-format=json --output=/tmp/fio.json >/dev/null && grep -oE '"(bw_bytes|iops)" *: *[0-9.]+' /tmp/fio.json | head -n 4`);
    const n = [...line.matchAll(/"(bw_bytes|iops)" *: *([0-9.]+)/g)].map((m) => Number(m[2]));
    if (n.length !== 4 || n.some((x) => !Number.isFinite(x))) throw new Error(`fio ${rw}: no bandwidth and IOPS for reads and writes in "${line.slice(0, 300)}"`);
    const [bytesPerSec, iops] = rw.endsWith('read') ? n.slice(0, 2) : n.slice(2, 4);
    out[job] = { bytesPerSec: bytesPerSec!, iops: iops! };
    say(`${name} ${job}: ${(bytesPerSec! / 1e6).toFixed(2)} MB/s, ${iops!.toFixed(0)} IOPS`);
  }
  return out;
}

/** A phy disk with no family: blkback opens the block device in params (the baseline). POSIX sh. */
function plainHotplugScript(): string {
  const path = join(work, 'block-plain');
  writeFileSync(path, [
    '#!/bin/sh',
    'case $1 in add)',
    '  dev=$(xenstore-read "$XENBUS_PATH/params") || exit 1',
    '  xenstore-write "$XENBUS_PATH/physical-device" "$(stat -L -c %t:%T "$dev")" "$XENBUS_PATH/physical-device-path" "$dev" "$XENBUS_PATH/hotplug-status" connected ;;',
    'esac',
    'exit 0',
    '',
  ].join('\n'));
  chmodSync(path, 0o755);
  return path;
}

/** 1a. The image as a plain local disk: fio, and the file the parent and its clones read later. */
async function measurePlain(disk: string): Promise<FioRun | undefined> {
  let domid: number | undefined;
  try {
    domid = await debianGuest(`${PARENT}-plain`, `vdev=xvda, access=rw, script=${plainHotplugScript()}, target=${disk}`);
    const r = await fio(`${PARENT}-plain`, domid);
    await run(`${PARENT}-plain`, domid, 'sync');
    return r;
  } catch (e) {
    say(`plain local disk: FAILED: ${(e as Error).message}`);
    missing.push(`fio on the plain local disk (${why(e)})`);
    return undefined;
  } finally {
    await destroyQuietly(xc, domid);
  }
}

/** Bytes over dom0's loopback: the fronts' TLS links to the clones' daemons (nothing else here uses TCP). */
const loopbackBytes = () => Number(readFileSync('/sys/class/net/lo/statistics/tx_bytes', 'utf8'));
/** What blkback read from a domain's xvda for it (the clone's own reads, whatever served them). */
const guestReadBytes = (domid: number) => {
  const f = `/sys/bus/xen-backend/devices/vbd-${domid}-${XVDA}/statistics/rd_sect`;
  return existsSync(f) ? Number(readFileSync(f, 'utf8')) * 512 : NaN;
};

interface Fetch { label: string; clones: number; fetched: number; read: number; ms: number }

/** Runs `command` in every clone at once; the bytes fetched meanwhile from the front, and read by the clones. */
async function fetchedBy(label: string, clones: EagerCloneResult['clones'], command: string): Promise<Fetch> {
  const lo0 = loopbackBytes();
  const rd0 = clones.map((c) => guestReadBytes(c.domid));
  const t0 = Date.now();
  await Promise.all(clones.map((c) => run(c.name, c.domid, command, 600_000)));
  const r: Fetch = { label, clones: clones.length, fetched: loopbackBytes() - lo0, read: clones.reduce((n, c, i) => n + guestReadBytes(c.domid) - rd0[i]!, 0), ms: Date.now() - t0 };
  say(`${label}: ${JSON.stringify(r)}`);
  return r;
}

/** the parent's disk, as its fork exports it */
let diskBytes = NaN;

interface ForkTime { clones: number; blocks: BlockTransport; totalMs: number; diskMs: EagerCloneResult['diskMs'] }

/** An eager fork timed end to end; `use` gets its clones, which are gone afterwards with the fork's exports. */
async function fork<T>(parent: number, count: number, forks: ForkTime[], use: (r: EagerCloneResult) => Promise<T>, blocks: BlockTransport = 'front'): Promise<T> {
  const t0 = Date.now();
  const r = await cloneEager(xc, xs, parent, { count, workdir: work, diskOptions: { blocks } });
  const ft: ForkTime = { clones: count, blocks, totalMs: Date.now() - t0, diskMs: r.diskMs };
  diskBytes = r.disks[0]?.exports[0]?.sizeBytes ?? NaN;
  say(`fork into ${count}: ${JSON.stringify(ft)}`);
  forks.push(ft);
  try {
    return await use(r);
  } finally {
    for (const c of r.clones) await destroyClone(xc, xs, c.domid, c.uuid).catch((e: Error) => say(`NOTE ${e.message}`));
    await releaseForkDisks(r.disks).catch((e: Error) => say(`NOTE ${e.message}`));
  }
}

/** What the fork's mcdist slice server of the parent's xvda has sent: SIGUSR1 makes it log its counters. */
async function sliceServerBytes(fork: string): Promise<number> {
  const base = join(DEFAULT_DISK_STATE_DIR, FAMILY, 'mcdist', `serve-${fork}`, `${PARENT}.xvda`);
  const stats = () => readFileSync(`${base}.log`, 'utf8').split('\n').filter((l) => l.startsWith('stats '));
  const had = stats().length;
  process.kill(Number(readFileSync(`${base}.pid`, 'utf8')), 'SIGUSR1');
  for (let i = 0; i < 250; i++) {
    if (stats().length > had) return (JSON.parse(stats().at(-1)!.slice(6)) as { bytesSent: number }).bytesSent;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`the slice server of fork ${fork} wrote no counters (${base}.log)`);
}

/** Like fetchedBy, with the fork's disk over mcdist: the bytes are what its slice server sent. */
async function fetchedOverMcdist(label: string, r: EagerCloneResult, command: string): Promise<Fetch> {
  const used = r.clones.flatMap((c) => c.disks.map(describeDiskTransport));
  if (used.some((u) => !u.includes(':mcdist'))) throw new Error(`a clone reads its disk through the front, not mcdist: ${used.join(', ')}`);
  const fork = r.disks[0]!.fork;
  const sent0 = await sliceServerBytes(fork);
  const rd0 = r.clones.map((c) => guestReadBytes(c.domid));
  const t0 = Date.now();
  await Promise.all(r.clones.map((c) => run(c.name, c.domid, command, 600_000)));
  const f: Fetch = { label, clones: r.clones.length, fetched: (await sliceServerBytes(fork)) - sent0, read: r.clones.reduce((n, c, i) => n + guestReadBytes(c.domid) - rd0[i]!, 0), ms: Date.now() - t0 };
  say(`${label}: ${JSON.stringify(f)}`);
  return f;
}

async function attempt<T>(row: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    say(`${row}: FAILED: ${(e as Error).message}`);
    missing.push(`${row} (${why(e)})`);
    return undefined;
  }
}

const ratio = (a: number, b: number) => (b && Number.isFinite(a / b) ? (a / b < 0.01 ? `${(a / b).toPrecision(2)}x` : `${(a / b).toFixed(2)}x`) : 'n/a');
const mb = (bytes: number) => (Number.isFinite(bytes) ? `${(bytes / 1e6).toFixed(1)} MB` : 'n/a');
const speed = (r: { bytesPerSec: number; iops: number } | undefined) => (r ? `${(r.bytesPerSec / 1e6).toFixed(2)} MB/s, ${r.iops.toFixed(0)} IOPS` : 'n/a');
const diskTotal = (d: EagerCloneResult['diskMs']) => d.prepare + d.freeze + d.export + d.attach;

async function main(): Promise<void> {
  const cannot = image ? diskPathMissing() : 'no Debian guest disk (run with --debian-disk)';
  if (!image || cannot) {
    missing.push(...['fio: plain vs clone', 'blocks fetched: 1 clone', 'blocks fetched: 4 clones', 'blocks over mcdist: 1 and 4 clones', 'fork time with disks'].map((r) => `${r} (${cannot})`));
    return;
  }
  say(`Debian guest, 256 MiB PVH, 1 vCPU, root disk ${image}; fio: ${FIO_MIB} MiB file, 4 KiB blocks, O_DIRECT, psync (queue depth 1), ${FIO_SECONDS} s a job`);
  const plain = await measurePlain(image);

  let parent: number | undefined;
  let parentFio: FioRun | undefined;
  let cloneFio: FioRun | undefined;
  const fetches: Fetch[] = [];
  const forks: ForkTime[] = [];
  let used = NaN;
  try {
    parent = await debianGuest(PARENT, `vdev=xvda, access=rw, script=block-snowflock, target=${FAMILY}:${PARENT}/xvda:${image}`);
    parentFio = await attempt('fio through the parent\'s family (no fork yet)', () => fio(PARENT, parent!));
    // The parent has run the workload once, as a running service would have: its page cache is warm at the fork.
    used = Number((await run(PARENT, parent, `mkdir -p /root/sf && ${WORKLOAD} && df -B1 --output=used / | tail -n 1`, 900_000)).split(/\s+/).pop());

    await attempt('one clone: blocks fetched and fio', () => fork(parent!, 1, forks, async (r) => {
      fetches.push(await fetchedBy('1 clone, page cache as inherited at the fork', r.clones, WORKLOAD));
      fetches.push(await fetchedBy('1 clone, page cache dropped first', r.clones, `${DROP_CACHES} && ${WORKLOAD}`));
      cloneFio = await attempt('fio through a clone\'s overlay', () => fio(r.clones[0]!.name, r.clones[0]!.domid));
    }));
    await attempt('4 clones of one fork: blocks fetched', () => fork(parent!, 4, forks, async (r) => {
      fetches.push(await fetchedBy('4 clones of one fork, page cache dropped first', r.clones, `${DROP_CACHES} && ${WORKLOAD}`));
    }));
    // The same two over mcdist (--disk-transport mcdist): the slice server's bytes, not the front's.
    await attempt('1 clone over mcdist: blocks sent', () => fork(parent!, 1, forks, async (r) => {
      fetches.push(await fetchedOverMcdist('1 clone over mcdist, page cache dropped first', r, `${DROP_CACHES} && ${WORKLOAD}`));
    }, 'mcdist'));
    await attempt('4 clones over mcdist: blocks sent', () => fork(parent!, 4, forks, async (r) => {
      fetches.push(await fetchedOverMcdist('4 clones over mcdist, page cache dropped first', r, `${DROP_CACHES} && ${WORKLOAD}`));
    }, 'mcdist'));
  } catch (e) {
    say(`parent: FAILED: ${(e as Error).message}`);
    missing.push(`the parent on its disk family (${why(e)})`);
  } finally {
    await destroyQuietly(xc, parent); // xl destroy: block-snowflock remove detaches the parent's disk
    await useFamily(FAMILY, {}, (f) => f.shutdown()).catch((e: Error) => say(`NOTE family ${FAMILY}: ${e.message}`));
    rmSync(join(DEFAULT_DISK_STATE_DIR, FAMILY), { recursive: true, force: true });
  }

  say('');
  say('1. 4 KiB I/O in the guest (fio, O_DIRECT, queue depth 1); goal: clone >= 0.8x the plain local disk');
  say('| job | plain local disk (blkback on the image) | parent through its family, before a fork | clone\'s overlay over the fork\'s slice | clone vs plain | parent vs plain |');
  say('|---|---|---|---|---|---|');
  for (const [job] of JOBS) {
    const [p, f, c] = [plain?.[job], parentFio?.[job], cloneFio?.[job]];
    say(`| ${job} | ${speed(p)} | ${speed(f)} | ${speed(c)} | ${p && c ? ratio(c.bytesPerSec, p.bytesPerSec) : 'n/a'} | ${p && f ? ratio(f.bytesPerSec, p.bytesPerSec) : 'n/a'} |`);
  }
  say('');
  if (fetches.length) {
    say(`2. Fetched from the fork's front (bytes over its TLS link: NBD replies and requests, TLS and TCP/IP headers), or over mcdist (what the slice server sent: sealed blocks with their headers), while the clones run a read-mostly workload; disk ${mb(diskBytes)}, ${mb(used)} of it in use`);
    say('| clones | fetched | vs disk size | vs blocks in use | the clones\' own reads (blkback) | workload (ms) |');
    say('|---|---|---|---|---|---|');
    for (const f of fetches) say(`| ${f.label} | ${mb(f.fetched)} | ${ratio(f.fetched, diskBytes)} | ${ratio(f.fetched, used)} | ${mb(f.read)} | ${f.ms} |`);
    const one = fetches.find((f) => f.clones === 1 && /dropped/.test(f.label) && !/mcdist/.test(f.label));
    const four = fetches.find((f) => f.clones === 4 && !/mcdist/.test(f.label));
    if (one && four) say(`through the front, 4 clones of one fork fetch ${ratio(four.fetched, one.fetched)} what one clone does (each clone its own blocks)`);
    const oneMc = fetches.find((f) => f.clones === 1 && /mcdist/.test(f.label));
    const fourMc = fetches.find((f) => f.clones === 4 && /mcdist/.test(f.label));
    if (oneMc && fourMc) say(`over mcdist, 4 clones of one fork cost the slice server ${ratio(fourMc.fetched, oneMc.fetched)} what one clone does (goal <= 1.2x; one host: its 4 clones share one backing)`);
    say('');
  }
  if (forks.length) {
    say('3. Fork of the Debian guest with its disk (eager: memory image + restore), end to end vs the same without its disk steps');
    say('| clones | blocks | fork (ms) | disk steps (ms) | prepare | freeze | export | attach (all clones) | fork vs fork without disk steps |');
    say('|---|---|---|---|---|---|---|---|---|');
    for (const f of forks) {
      const d = diskTotal(f.diskMs);
      say(`| ${f.clones} | ${f.blocks} | ${f.totalMs} | ${d} | ${f.diskMs.prepare} | ${f.diskMs.freeze} | ${f.diskMs.export} | ${f.diskMs.attach} | ${ratio(f.totalMs, f.totalMs - d)} |`);
    }
  }
  say(`json ${JSON.stringify({ plain, parentFio, cloneFio, diskBytes, used, fetches, forks })}`);
}

try {
  await main();
} finally {
  reportMissingRows(say, missing);
  xs.close();
  xc.close();
  rmSync(work, { recursive: true, force: true });
}
