// Memory on demand (needs Xen with mem_paging: the project's build, or a host that has it).
// A 320 MiB parent fills 200 MiB with a pattern and keeps rewriting it; its clone starts with
// that memory paged out, fetches it from the memserver page by page, and must see the
// parent's memory as of the fork, never a page the parent wrote later. Then the faults:
// memserver killed and back, memtap killed and taken over, parent destroyed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon } from '../../lib/xen/native.js';
import { readConsole, waitForConsole } from '../../lib/xen/console.js';
import { destroyClone } from '../../lib/descriptor/restore.js';
import { processAlive, startMemServer } from '../../lib/memtap/spawn.js';
import { requestMemtapStats } from '../../lib/memtap/stats.js';
import { DEFAULT_STATE_DIR, type LazyCloneResult } from '../../lib/clone/lazy.js';

const FAMILIES = join(DEFAULT_STATE_DIR, 'families');
import { destroyQuietly, memPagingSkip, openXen, startTestGuest, waitUntil, sleep } from './helpers.js';
import { memPasses, memtestCmdline } from './memtest.js';

const xc = openXen();
const xs = new (loadAddon().XenStore)();
let skip: string | false = false;
const parentName = `sf-mt-${process.pid}`;
let parent: number | undefined;
let fork: LazyCloneResult | undefined;

function events(log: string): Record<string, unknown>[] {
  return readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}
const clone = () => fork!.clones[0]!;
const cloneOk = (c = clone()) => memPasses(c.name, c.vmid).every((p) => p.bad === 0);

before(async () => {
  skip = await memPagingSkip(xc);
  if (skip) return;
  // Debian's kernel keeps ~50 MiB of a 256 MiB guest to itself, and the clone runs the
  // free-page report on top: 320 MiB leaves room for 200 MiB of pattern.
  parent = await startTestGuest(parentName, 'pvh', memtestCmdline({ mb: 200, mode: 'rewrite', reportFree: true }), 320);
  await waitForConsole(parentName, /SF-MEM pass=2 |SF-AGENT sf-memtest exited/, 300_000);
  assert.doesNotMatch(readConsole(parentName), /sf-memtest exited/, 'the parent\'s workload runs');
});

/** The paging ring is out of the clone's physmap: no page at its gfn, for dom0 as for the guest. */
function ringOutOfReach(domid: number, memtapLog: string): void {
  const ringGfn = Number(events(memtapLog).filter((e) => e.event === 'ready').at(-1)!.ringGfn);
  assert.ok(ringGfn > 0, 'memtap reports the ring gfn');
  assert.equal(xc.gfnHasPage(domid, ringGfn), false, `the clone has no page at its paging ring gfn ${ringGfn.toString(16)}`);
}

const tail = (name: string) => readConsole(name).trim().split('\n').slice(-12).join('\n');

const note = (s: string) => process.stdout.write(s.split('\n').map((l) => `# ${l}\n`).join(''));

after(async () => {
  // What the guests said last: the first thing to read when a test above failed.
  if (!skip) note(`parent console:\n${tail(parentName)}`);
  if (fork) for (const c of fork.clones) note(`clone ${c.name} console:\n${tail(c.name)}\nmemtap log:\n${readFileSync(c.memtapLog, 'utf8').trim().split('\n').slice(-6).join('\n')}`);
  if (fork) {
    for (const c of fork.clones) await destroyClone(xc, xs, c.domid, c.uuid).catch(() => {});
    try {
      process.kill(fork.memserver.pid, 'SIGTERM');
    } catch {
      /* finished already */
    }
  }
  await destroyQuietly(xc, parent);
  xs.close();
  xc.close();
});

function forkOne(extra: string[] = []): LazyCloneResult {
  const run = spawnSync(process.execPath, ['dist/lib/cli/main.js', 'clone', String(parent), '-n', '1', '--json', ...extra], { encoding: 'utf8', timeout: 600_000 });
  assert.equal(run.status, 0, `snowflock clone failed: ${run.stdout} ${run.stderr}`);
  return JSON.parse(run.stdout) as LazyCloneResult;
}

/** Tears a fork down after a failed test, so the next one starts with a clean host. */
async function abandon(): Promise<void> {
  if (!fork) return;
  for (const c of fork.clones) await destroyClone(xc, xs, c.domid, c.uuid).catch(() => {});
  if (processAlive(fork.memserver.pid)) process.kill(fork.memserver.pid, 'SIGTERM');
  await waitUntil('memserver gone', () => !processAlive(fork!.memserver.pid), 30_000).catch(() => {});
  rmSync(fork.dir, { recursive: true, force: true });
  fork = undefined;
}

async function finish(f: LazyCloneResult): Promise<void> {
  const c = f.clones[0]!;
  // Destroying the clone ends its memtap, which says goodbye; the last clone ends the memserver.
  await destroyClone(xc, xs, c.domid, c.uuid);
  f.clones.splice(0);
  // The finished memserver removes the family's directory, memtap's log with it, so the log
  // may be gone by the time it is read: memtap's exit is its logged goodbye or its process gone.
  const memtapExited = () => !processAlive(c.memtapPid) || (existsSync(c.memtapLog) && events(c.memtapLog).some((e) => e.event === 'exit'));
  await waitUntil('memtap exits', memtapExited, 30_000);
  assert.equal(xs.read(`/local/domain/0/snowflock/memtap/${c.domid}/xen-port`), null, 'memtap record removed');
  await waitUntil('memserver finished', () => !processAlive(f.memserver.pid), 30_000);
  await waitUntil('the family directory removed', () => !existsSync(f.dir), 30_000);
}

test('a lazy clone sees the parent\'s memory as of the fork, fetched page by page', async (t) => {
  if (skip) return t.skip(skip);
  t.after(abandon);
  const forkGen = Math.max(...memPasses(parentName, 0).map((p) => p.gen));
  // Neighbours wait for the clone's free-page report (it reports: sf.reportfree=1).
  fork = forkOne(['--free-report-wait', '120']);
  const c = clone();
  t.diagnostic(`parent stopped ${fork.pauseMs} ms; clone ready in ${c.buildMs} ms; ${c.evicted} pages out, ${c.eager} eager, page-out ${c.evictMs.toFixed(0)} ms`);
  assert.ok(c.evicted > 45_000, `the 200 MiB pattern is paged out (${c.evicted} pages)`);
  await waitForConsole(c.name, new RegExp(`SF-MEM forked vmid=${c.vmid}`), 300_000);
  await waitUntil('two clone passes', () => memPasses(c.name, c.vmid).length >= 2, 300_000);
  const passes = memPasses(c.name, c.vmid);
  assert.ok(cloneOk(c), `clone passes: ${JSON.stringify(passes)}`);
  // The parent passes on while it is being suspended: the clone starts at that generation or later, never over.
  assert.ok(passes[0]!.gen >= forkGen, `clone continues the parent's generations (${forkGen} at the fork request): ${passes[0]!.gen}`);
  // The parent kept rewriting its memory meanwhile, with bad=0 itself.
  const parentPasses = memPasses(parentName, 0);
  assert.ok(Math.max(...parentPasses.map((p) => p.gen)) > passes[0]!.gen, 'the parent changed its memory after the fork');
  assert.ok(parentPasses.every((p) => p.bad === 0));
  const stats = await requestMemtapStats(c.memtapPid, c.memtapLog);
  t.diagnostic(`memtap: ${JSON.stringify(stats)}`);
  assert.ok(stats.faults + stats.prefetched > 40_000, 'the clone fetched the pattern it read');
  // The clone reported the pages its kernel had free; memtap applied the report and said so
  // before the clone went on (what it marked is the share not already fetched by then).
  const applied = /SF-FREE applied=(\S+)/.exec(readConsole(c.name));
  assert.ok(applied && /^\d+$/.test(applied[1]!), `memtap acknowledged the free-page report: ${applied?.[0] ?? 'no SF-FREE applied line'}`);
  assert.equal(stats.freeMarked, Number(applied[1]), 'the acknowledgement is what memtap marked');
  const resumed = events(c.memtapLog).find((e) => e.event === 'prefetch-resumed');
  assert.equal(resumed?.why, 'free-page report applied', `--free-report-wait held prefetch until the report: ${JSON.stringify(resumed)}`);
  await finish(fork);
  fork = undefined;
});

// Runs while no other fork holds a memory image: dom0's file system is RAM and holds one.
test('the mem_access backend on a CPU without it fails with the reason and leaves nothing behind', async (t) => {
  if (skip) return t.skip(skip);
  const before = xc.listDomains().map((d) => d.domid);
  const families = () => (existsSync(FAMILIES) ? readdirSync(FAMILIES).sort() : []);
  const familiesBefore = families();
  const run = spawnSync(process.execPath, ['dist/lib/cli/main.js', 'clone', String(parent), '--backend', 'access', '--json'], { encoding: 'utf8', timeout: 600_000 });
  if (run.status === 0) {
    // A host with Intel EPT (the nightly hardware): the stock-Xen path must be as exact as paging.
    const f = JSON.parse(run.stdout) as LazyCloneResult;
    const c = f.clones[0]!;
    t.diagnostic(`mem_access clone ${c.domid} built: ${c.evicted} pages restricted`);
    await waitUntil('two passes of the mem_access clone', () => memPasses(c.name, c.vmid).length >= 2, 300_000);
    assert.ok(cloneOk(c), JSON.stringify(memPasses(c.name, c.vmid)));
    return finish(f);
  }
  assert.match(run.stdout, /xc_set_mem_access|xc_monitor_enable/, run.stdout + run.stderr);
  assert.deepEqual(xc.listDomains().map((d) => d.domid), before, 'no half-built clone left');
  assert.deepEqual(families(), familiesBefore, 'no memory image or memserver left');
  assert.equal(xc.domainInfo(parent!).paused, false, 'the parent runs on');
});

test('a full disk for the memory copy fails naming it; the parent runs on and nothing is left', async (t) => {
  if (skip) return t.skip(skip);
  const small = mkdtempSync(join(tmpdir(), 'sf-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', small]);
  try {
    const before = xc.listDomains().map((d) => d.domid);
    const run = spawnSync(process.execPath, ['dist/lib/cli/main.js', 'clone', String(parent), '--state-dir', small, '--json'], { encoding: 'utf8', timeout: 600_000 });
    assert.equal(run.status, 1, run.stdout + run.stderr);
    assert.match(JSON.parse(run.stdout).error, /No space left on device/);
    assert.deepEqual(xc.listDomains().map((d) => d.domid), before, 'no clone built');
    assert.deepEqual(readdirSync(join(small, 'families')), [], 'the half-written copy is removed');
    const seen = memPasses(parentName, 0).length;
    await waitUntil('the parent passes again', () => memPasses(parentName, 0).length > seen, 120_000);
  } finally {
    execFileSync('umount', [small]);
    rmSync(small, { recursive: true, force: true });
  }
});

test('memserver killed: the clone is paused, not fed wrong pages; memserver back: it continues', async (t) => {
  if (skip) return t.skip(skip);
  await abandon();
  fork = forkOne();
  const c = clone();
  // Right after the fork the clone faults all the time: from now on every fetch fails.
  process.kill(fork.memserver.pid, 'SIGKILL');
  await waitUntil('memtap reports the memserver lost', () => events(c.memtapLog).some((e) => e.event === 'memserver-lost'), 120_000);
  assert.equal(xc.domainInfo(c.domid).paused, true, 'the clone is paused');
  const seen = memPasses(c.name, c.vmid).length;
  await sleep(3000);
  assert.equal(memPasses(c.name, c.vmid).length, seen, 'a paused clone makes no progress');
  const server = await startMemServer({
    descriptor: `${fork.dir}/parent.sfd`, image: `${fork.dir}/parent.mem`, tokenFile: `${fork.dir}/token`, clones: 1,
    logFile: `${fork.dir}/memserver-2.log`, port: fork.memserver.port, removeOnExit: fork.dir, timeoutMs: 120_000,
  });
  fork.memserver.pid = server.pid;
  await waitUntil('memtap reports the memserver back', () => events(c.memtapLog).some((e) => e.event === 'memserver-back'), 60_000);
  assert.equal(xc.domainInfo(c.domid).paused, false, 'the clone runs again');
  await waitUntil('the clone passes again', () => memPasses(c.name, c.vmid).length >= seen + 2, 300_000);
  assert.ok(cloneOk(c), JSON.stringify(memPasses(c.name, c.vmid)));
});

test('memtap killed: the clone is paused and a new memtap takes over the ring', async (t) => {
  if (skip || !fork) return t.skip(skip || 'no clone');
  const c = clone();
  const worker = Number(events(c.memtapLog).filter((e) => e.event === 'ready').at(-1)!.worker);
  assert.ok(worker > 0, 'the worker pid is logged');
  assert.equal(xc.domainInfo(c.domid).paused, false, 'the clone runs before its memtap is killed');
  ringOutOfReach(c.domid, c.memtapLog);
  process.kill(worker, 'SIGKILL');
  // Ask Xen, not the supervisor's log: between the worker's death and the takeover the clone
  // must be paused (a new worker takes seconds to start, the poll is every 100 ms).
  const restarted = () => events(c.memtapLog).some((e) => e.event === 'memtap-restarted');
  let pausedByXen = false;
  await waitUntil('Xen to report the clone paused', () => (pausedByXen = xc.domainInfo(c.domid).paused) || restarted(), 30_000);
  assert.ok(pausedByXen, 'Xen reports the clone paused while its memtap is gone (the takeover came before it was seen paused)');
  await waitUntil('memtap-lost', () => events(c.memtapLog).some((e) => e.event === 'memtap-lost' && e.paused === true), 30_000);
  await waitUntil('memtap-restarted', restarted, 120_000);
  assert.equal(events(c.memtapLog).filter((e) => e.event === 'ready').at(-1)!.takeover, true);
  assert.equal(xc.domainInfo(c.domid).paused, false);
  ringOutOfReach(c.domid, c.memtapLog);
  const seen = memPasses(c.name, c.vmid).length;
  await waitUntil('the clone passes after the takeover', () => memPasses(c.name, c.vmid).length >= seen + 2, 300_000);
  assert.ok(cloneOk(c), JSON.stringify(memPasses(c.name, c.vmid)));
});

test('parent destroyed while the clone runs: the clone keeps working (the image outlives it)', async (t) => {
  if (skip || !fork) return t.skip(skip || 'no clone');
  const c = clone();
  execFileSync('xl', ['destroy', String(parent)]);
  parent = undefined;
  const seen = memPasses(c.name, c.vmid).length;
  await waitUntil('clone passes after the parent is gone', () => memPasses(c.name, c.vmid).length >= seen + 2, 300_000);
  assert.ok(cloneOk(c));
  await finish(fork);
  fork = undefined;
});
