// Memory-on-demand benchmark, run inside a Xen dom0 with mem_paging (the test box with the
// project's Xen: `scripts/bench/memtap`). Everything is measured in this one run; it prints
// ratios, never absolute claims (test box timings are emulated).
//   1. pages fetched vs guest memory: read-mostly and allocate-after-fork workloads,
//      with and without the free-page heuristic
//   2. per-fault cost vs a raw 4 KiB TCP round trip between the same endpoints
//   3. fork-to-running: on-demand clone vs eager restore from the descriptor vs xl save+restore
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadAddon } from '../../lib/xen/native.js';
import { openXen } from '../../lib/xen/control.js';
import { readConsole, waitForConsole } from '../../lib/xen/console.js';
import { xlConfig, xlCreate } from '../../lib/xen/xl.js';
import { testGuestImage } from '../../lib/testbox/guest-image.js';
import { cloneLazy, type LazyCloneResult } from '../../lib/clone/lazy.js';
import { cloneEager } from '../../lib/clone/eager.js';
import { destroyClone } from '../../lib/descriptor/restore.js';
import { requestMemtapStats } from '../../lib/memtap/stats.js';
import { processAlive } from '../../lib/memtap/spawn.js';
import { reportMissingRows } from './missing-rows.js';

const say = (s: string) => process.stdout.write(`snowflock-bench: ${s}\n`);
const xc = openXen();
const xs = new (loadAddon().XenStore)();
const work = mkdtempSync(join(tmpdir(), 'sf-bench-'));
const image = testGuestImage();
// Debian's kernel keeps ~50 MiB of the guest to itself; 320 MiB (as in the test suite) leaves room for the workloads.
const GUEST_MIB = 320;
const GUEST_PAGES = (GUEST_MIB << 20) / 4096;

function cmdline(mode: string, extra: string): string {
  return `xen.fifo_events=0 sf.workload=memtest sf.mode=${mode} sf.reportfree=1 ${extra}`;
}

async function startParent(name: string, line: string): Promise<number> {
  const domid = await xlCreate({ name, type: 'pvh', kernel: image.kernel, ramdisk: image.initrd, memoryMiB: GUEST_MIB, vcpus: 1, cmdline: line });
  await waitForConsole(name, /SF-MEM pass=2 /, 300_000);
  return domid;
}

function passes(name: string, vmid: number): { bad: number }[] {
  return [...readConsole(name).matchAll(new RegExp(`SF-MEM pass=\\d+ gen=\\d+ bad=(\\d+) pages=\\d+ vmid=${vmid}\\b`, 'g'))].map((m) => ({ bad: Number(m[1]) }));
}

async function until(what: string, cond: () => boolean, ms: number): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now();
}

interface LazyRun { label: string; fetched: number; zero: number; freeMarked: number; freeAck: string; faults: number; prefetched: number; readyMs: number; firstLineMs: number; bad: number; perFetchMs: number; perBatchMs: number; pagesPerFetch: number; pauseMs: number }

async function lazyRun(label: string, parent: number, o: { heuristics?: boolean; prefetch?: number; freeReportWaitMs?: number; passes?: number; forMs?: number }): Promise<LazyRun> {
  const t0 = Date.now();
  const f: LazyCloneResult = await cloneLazy(xc, xs, parent, { count: 1, stateDir: work, heuristics: o.heuristics, prefetch: o.prefetch, freeReportWaitMs: o.freeReportWaitMs });
  const tReady = Date.now();
  const c = f.clones[0]!;
  // A clone that shut down (the test box's emulated CPU triple-faults one now and then) ends the row at once.
  const running = (cond: () => boolean) => () => {
    const why = xc.domainInfo(c.domid).shutdownReason;
    if (why) throw new Error(`the clone shut down (${why}); see the console log for "Triple fault"`);
    return cond();
  };
  try {
    const tFirst = await until('clone output', running(() => /SF-MEM forked/.test(readConsole(c.name))), 300_000);
    // forMs: sample the fault stream for a while instead of waiting for whole passes (prefetch 0 is slow).
    if (o.forMs) await new Promise((r) => setTimeout(r, o.forMs));
    else await until('clone passes', running(() => passes(c.name, c.vmid).length >= (o.passes ?? 3)), 900_000);
    const s = await requestMemtapStats(c.memtapPid, c.memtapLog);
    const bad = passes(c.name, c.vmid).reduce((n, p) => n + p.bad, 0);
    // What memtap told the clone's agent about its free-page report ("timeout": it never heard back).
    const freeAck = /SF-FREE applied=(\S+)/.exec(readConsole(c.name))?.[1] ?? 'no report';
    const r: LazyRun = {
      label, fetched: s.fetchedPages, zero: s.zeroFilled, freeMarked: s.freeMarked, freeAck, faults: s.faults, prefetched: s.prefetched, readyMs: tReady - t0, firstLineMs: tFirst - t0, bad,
      perFetchMs: s.fetches ? s.fetchMs / s.fetches : 0, perBatchMs: s.batches ? s.handleMs / s.batches : 0, pagesPerFetch: s.fetches ? s.fetchedPages / s.fetches : 0, pauseMs: f.pauseMs,
    };
    say(`${label}: ${JSON.stringify(r)}`);
    return r;
  } finally {
    await destroyClone(xc, xs, c.domid, c.uuid);
    await until('memserver exit', () => !processAlive(f.memserver.pid), 60_000).catch(() => process.kill(f.memserver.pid, 'SIGTERM'));
    // dom0's disk is RAM: the next run needs the space of this fork's memory copy.
    rmSync(f.dir, { recursive: true, force: true });
  }
}

async function rawTcpRoundTripMs(rounds: number): Promise<number> {
  const server = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as net.AddressInfo).port;
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  await new Promise((r) => sock.once('connect', r));
  const page = Buffer.alloc(4096, 7);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) {
    let got = 0;
    const done = new Promise<void>((resolve) => {
      const on = (d: Buffer) => {
        got += d.length;
        if (got >= 4096) {
          sock.off('data', on);
          resolve();
        }
      };
      sock.on('data', on);
    });
    sock.write(page);
    await done;
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / rounds;
  sock.destroy();
  server.close();
  return ms;
}

async function eagerRun(parent: number): Promise<{ readyMs: number; firstLineMs: number }> {
  const t0 = Date.now();
  const r = await cloneEager(xc, xs, parent, { count: 1, workdir: work });
  const tReady = Date.now();
  const c = r.clones[0]!;
  const tFirst = await until('eager clone output', () => /SF-MEM forked/.test(readConsole(c.name)), 300_000);
  await destroyClone(xc, xs, c.domid, c.uuid);
  return { readyMs: tReady - t0, firstLineMs: tFirst - t0 };
}

async function xlSaveRestoreRun(parentName: string, line: string): Promise<{ readyMs: number; firstLineMs: number; saveMs: number }> {
  const file = join(work, 'xl-save.img');
  const name = `${parentName}-xl`;
  const cfg = join(work, 'xl-restore.cfg');
  writeFileSync(cfg, xlConfig({ name, type: 'pvh', kernel: image.kernel, ramdisk: image.initrd, memoryMiB: GUEST_MIB, vcpus: 1, cmdline: line }));
  const t0 = Date.now();
  const xl = (args: string[]) => {
    try {
      execFileSync('xl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw new Error(`xl ${args.join(' ')} failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`);
    }
  };
  xl(['save', '-c', parentName, file]);
  const tSaved = Date.now();
  xl(['restore', '-p', cfg, file]);
  xl(['unpause', name]);
  const tReady = Date.now();
  const seen = readConsole(name).length;
  const tFirst = await until('restored guest output', () => readConsole(name).length > seen && /SF-MEM pass/.test(readConsole(name).slice(seen)), 300_000);
  xl(['destroy', name]);
  rmSync(file, { force: true });
  return { readyMs: tReady - t0, firstLineMs: tFirst - t0, saveMs: tSaved - t0 };
}

const ratio = (a: number, b: number) => (b ? (a / b).toFixed(2) + 'x' : 'n/a');

/** Each measurement on its own parent, so one failure (or a crashed parent) costs only that row. */
// `scripts/bench/memtap -- alloc`: only the rows whose label contains the word ("_" for a space:
// `-- prefetch_0` runs the per-fault rows, sealed and plaintext).
const only = process.argv[2]?.replaceAll('_', ' ');
/** rows that failed: named on the last line, and the bench exits 1 */
const missing: string[] = [];

async function measure<T>(label: string, line: string, fn: (parent: number, name: string) => Promise<T>): Promise<T | undefined> {
  if (only && !label.includes(only)) return undefined;
  // Clone names add "-<family>-<vmid>" to this and domain names are at most 64 characters.
  const name = `bench-${label.replace(/[^a-z0-9]+/gi, '-')}`.slice(0, 40).replace(/-$/, '');
  let parent: number | undefined;
  try {
    parent = await startParent(name, line);
    return await fn(parent, name);
  } catch (e) {
    say(`${label}: FAILED: ${(e as Error).message}`);
    missing.push(label);
    return undefined;
  } finally {
    if (parent !== undefined) {
      try {
        const info = xc.domainInfo(parent);
        if (info.shutdownReason) say(`${label}: NOTE the parent is shut down (${info.shutdownReason}) after the fork`);
        await xc.destroy(parent);
      } catch {
        say(`${label}: NOTE the parent is gone after the fork`);
      }
    }
  }
}

async function main(): Promise<void> {
  say(`guest: ${GUEST_MIB} MiB PVH (${GUEST_PAGES} pages), 1 vCPU; memtest workloads from images/testguest/memtest.c; a fresh parent per row`);
  const readLine = cmdline('verify', 'sf.mb=128');
  // The parent wrote and freed 128 MiB before the fork: free but not zero, as in a guest that has run a while.
  const allocLine = cmdline('alloc', 'sf.mb=32 sf.allocmb=128 sf.churnmb=128');
  const readH = await measure('read-mostly, heuristics on', readLine, (p) => lazyRun('read-mostly, heuristics on', p, {}));
  const readN = await measure('read-mostly, heuristics off', readLine, (p) => lazyRun('read-mostly, heuristics off', p, { heuristics: false }));
  const allocH = await measure('allocate-after-fork, heuristics on', allocLine, (p) => lazyRun('allocate-after-fork, heuristics on', p, {}));
  const allocN = await measure('allocate-after-fork, heuristics off', allocLine, (p) => lazyRun('allocate-after-fork, heuristics off', p, { heuristics: false }));
  // Neighbours loaded before the report lands may be the very pages it names: hold them until then.
  const allocW = await measure('allocate-after-fork, heuristics on, prefetch held for the report', allocLine, (p) =>
    lazyRun('allocate-after-fork, heuristics on, prefetch held for the report', p, { freeReportWaitMs: 300_000 }));
  const eager = await measure('eager', readLine, async (p) => {
    const r = await eagerRun(p);
    say(`eager: ${JSON.stringify(r)}`);
    return r;
  });
  const xl = await measure('xl', readLine, async (_p, name) => {
    const r = await xlSaveRestoreRun(name, readLine);
    say(`xl save+restore: ${JSON.stringify(r)}`);
    return r;
  });
  const readP0 = await measure('prefetch 0', readLine, (p) => lazyRun('read-mostly, prefetch 0 (60 s sample)', p, { prefetch: 0, forMs: 60_000 }));
  // The same with the page stream unsealed (the memserver's trusted-network switch): what sealing costs a fault.
  const readP0Plain = await measure('prefetch 0, plaintext stream', readLine, async (p) => {
    process.env.SNOWFLOCK_MEMSERVER_INSECURE_PLAINTEXT = '1';
    try {
      return await lazyRun('read-mostly, prefetch 0, plaintext stream (60 s sample)', p, { prefetch: 0, forMs: 60_000 });
    } finally {
      delete process.env.SNOWFLOCK_MEMSERVER_INSECURE_PLAINTEXT;
    }
  });
  const tcp = await rawTcpRoundTripMs(2000);
  say(`raw TCP 4 KiB round trip (dom0 loopback, same endpoints as memtap-memserver): ${tcp.toFixed(3)} ms`);

  say('');
  say('| workload | heuristics | pages fetched | % of guest memory | marked free (still out at the report) | zero-filled | bad pages |');
  say('|---|---|---|---|---|---|---|');
  for (const r of [readH, readN, allocH, allocN, allocW]) {
    if (!r) continue;
    const [workload, ...how] = r.label.split(', ');
    say(`| ${workload} | ${how.join(', ').replace(/^heuristics /, '')} | ${r.fetched} | ${((100 * r.fetched) / GUEST_PAGES).toFixed(1)}% | ${r.freeMarked} | ${r.zero} | ${r.bad} |`);
  }
  if (allocH && allocN) say(`allocate-after-fork: heuristics fetch ${ratio(allocH.fetched, allocN.fetched)} the pages`);
  if (allocW && allocN) say(`allocate-after-fork: heuristics with prefetch held for the report fetch ${ratio(allocW.fetched, allocN.fetched)} the pages; first output ${ratio(allocW.firstLineMs, allocN.firstLineMs)} the time`);
  if (readH && readN) say(`read-mostly: heuristics fetch ${ratio(readH.fetched, readN.fetched)} the pages`);
  say('');
  say('| per fault | ms | vs raw 4 KiB TCP round trip |');
  say('|---|---|---|');
  if (readP0) {
    say(`| memserver fetch, 1 page (prefetch 0) | ${readP0.perFetchMs.toFixed(3)} | ${ratio(readP0.perFetchMs, tcp)} |`);
    say(`| dom0 handling: fetch + load + answer (prefetch 0) | ${readP0.perBatchMs.toFixed(3)} | ${ratio(readP0.perBatchMs, tcp)} |`);
  }
  if (readH) say(`| prefetch 64: one fetch of ${readH.pagesPerFetch.toFixed(0)} pages | ${readH.perFetchMs.toFixed(3)} | ${ratio(readH.perFetchMs, tcp)} |`);
  if (readP0Plain) say(`| memserver fetch, 1 page, plaintext stream (prefetch 0) | ${readP0Plain.perFetchMs.toFixed(3)} | ${ratio(readP0Plain.perFetchMs, tcp)} |`);
  if (readP0 && readP0Plain) {
    say(`sealed page stream vs plaintext: ${ratio(readP0.perFetchMs, readP0Plain.perFetchMs)} per 1-page fetch, ${ratio(readP0.perBatchMs, readP0Plain.perBatchMs)} per fault handled in dom0`);
  }
  say('');
  if (readH && eager && xl) {
    say('| fork to ... | on-demand | eager restore | xl save+restore | on-demand vs eager | on-demand vs xl |');
    say('|---|---|---|---|---|---|');
    say(`| clone ready to run (ms) | ${readH.readyMs} | ${eager.readyMs} | ${xl.readyMs} | ${ratio(readH.readyMs, eager.readyMs)} | ${ratio(readH.readyMs, xl.readyMs)} |`);
    say(`| clone's first output (ms) | ${readH.firstLineMs} | ${eager.firstLineMs} | ${xl.firstLineMs} | ${ratio(readH.firstLineMs, eager.firstLineMs)} | ${ratio(readH.firstLineMs, xl.firstLineMs)} |`);
    say(`parent stopped for the fork: on-demand ${readH.pauseMs} ms (descriptor + local memory copy); xl save ${xl.saveMs} ms`);
  }
  say(`json ${JSON.stringify({ readH, readN, readP0, readP0Plain, allocH, allocN, allocW, eager, xl, tcpMs: tcp })}`);
  reportMissingRows(say, missing);
}

try {
  await main();
} finally {
  xs.close();
  xc.close();
  rmSync(work, { recursive: true, force: true });
}
