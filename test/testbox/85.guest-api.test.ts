// The sf_* API from inside a real guest: a Node program in a PVH guest (the Node test guest,
// images/testguest/build-node.sh) asks this host's daemon for a ticket over vchan, forks itself,
// each clone computes its share and exits, the parent joins. A master and the host daemon with
// the Xen backend and the vchan guest transport run in this process. Afterwards no clone domain,
// clone record or vchan endpoint of a clone remains. Then the same job from a shell script
// through the sf-* wrappers, and sf_kill while the clones work. (Needs Xen with mem_paging.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon } from '../../lib/xen/native.js';
import { consoleLogDir, readConsole } from '../../lib/xen/console.js';
import { InternalClusterManager } from '../../lib/cluster/index.js';
import { HostDaemon } from '../../lib/daemon/host-daemon.js';
import { Master } from '../../lib/daemon/master.js';
import { MasterServer } from '../../lib/daemon/master-server.js';
import { VchanGuestTransport } from '../../lib/daemon/vchan-transport.js';
import { XenBackend } from '../../lib/daemon/xen-backend.js';
import { destroyQuietly, memPagingSkip, openXen, startNodeGuest, waitUntil } from './helpers.js';

const xc = openXen();
const xs = new (loadAddon().XenStore)();
const RECORDS = '/local/domain/0/snowflock/daemon/clones';
const VCHANS = '/local/domain/0/data/vchan/snowflock';
const stateDir = mkdtempSync(join(tmpdir(), 'sf-guest-api-'));
const parents: number[] = [];
let skip: string | false = false;
let cluster: InternalClusterManager | undefined;
let server: MasterServer | undefined;
let daemon: HostDaemon | undefined;
let guests: VchanGuestTransport | undefined;
const events: string[] = [];

const heldClones = () => (xs.directory(RECORDS) ?? []).map(Number);
const vchanEndpoints = () => (xs.directory(VCHANS) ?? []).map(Number).sort((a, b) => a - b);
const liveDomids = () => xc.listDomains().map((d) => d.domid);

before(async () => {
  skip = await memPagingSkip(xc);
  if (skip) return;
  const key = randomBytes(32);
  cluster = new InternalClusterManager({ ticketTtlMs: 600_000 });
  const master = new Master({ cluster, destroyTimeoutMs: 60_000, commandTimeoutMs: 600_000, buildTimeoutMs: 600_000 });
  server = new MasterServer({ master, key, heartbeatMs: 5000 });
  const { port } = await server.listen();
  const log = (event: string, fields?: Record<string, unknown>) => { events.push(`${event} ${JSON.stringify(fields)}`); };
  guests = new VchanGuestTransport({ log });
  daemon = new HostDaemon({
    host: 'box1', key, master: { host: '127.0.0.1', port },
    backend: new XenBackend(xc, xs, { advertiseHost: '127.0.0.1', stateDir }),
    guests, capacity: { vcpus: 4, memoryMiB: 1024 }, masterSilenceMs: 600_000,
  });
  await daemon.start();
  await daemon.whenRegistered();
});

after(async () => {
  await daemon?.close();
  await server?.close();
  await cluster?.close();
  for (const domid of heldClones()) await destroyQuietly(xc, domid);
  for (const domid of parents) await destroyQuietly(xc, domid);
  rmSync(stateDir, { recursive: true, force: true });
  xs.close();
  xc.close();
});

/** Starts a Node guest running the program and lets it reach the daemon over vchan. */
async function startJob(name: string, workload: 'node' | 'shell', program: string, args: string[]): Promise<number> {
  const domid = await startNodeGuest(name, workload, program, args);
  parents.push(domid);
  guests!.admit(domid); // Node needs ~15 s (emulated) before it connects: the server is up by then
  return domid;
}

async function endJob(parent: number): Promise<void> {
  await destroyQuietly(xc, parent);
  guests!.dismiss(parent);
}

/** The SF-JOB lines of every clone of `parentName`, from the consoles xenconsoled logged. */
function cloneLines(parentName: string): string[] {
  return readdirSync(consoleLogDir())
    .filter((f) => f.startsWith(`guest-${parentName}-`))
    .flatMap((f) => readConsole(f.slice('guest-'.length, -'.log'.length)).split('\n'))
    .filter((l) => l.includes('SF-JOB'));
}

/** The parent's last SF-JOB line once it matches `end`; fails early when the parent domain dies. */
async function jobEnd(name: string, domid: number, end: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = readConsole(name).split('\n').filter((l) => end.test(l)).pop();
    if (line) return line;
    // A parent shut down for 'suspend' is being captured; any other shutdown ends it.
    const reason = xc.listDomains().some((d) => d.domid === domid) ? xc.domainInfo(domid).shutdownReason ?? 'running' : 'gone';
    // A clone that crashed would keep the parent's sf_join waiting: stop at once.
    const crashed = heldClones().filter((c) => xc.listDomains().some((d) => d.domid === c) && xc.domainInfo(c).shutdownReason === 'crash');
    const gone = !['running', 'suspend'].includes(reason) || crashed.length > 0;
    if (gone || Date.now() > deadline) {
      assert.fail(`${gone ? `the parent domain ${reason}, crashed clones: ${crashed.join(',') || 'none'}` : `no ${end} within ${timeoutMs} ms`}; parent:\n${tail(name)}\nclones:\n${cloneLines(name).join('\n')}\ndaemon:\n${events.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

const tail = (name: string) => readConsole(name).split('\n').slice(-25).join('\n');

function shares(parentName: string): Map<number, bigint> {
  const found = new Map<number, bigint>();
  for (const l of cloneLines(parentName)) {
    const m = /SF-JOB share vmid=(\d+) of=(\d+) sum=(\d+)/.exec(l);
    if (m) found.set(Number(m[1]), BigInt(m[3]!));
  }
  return found;
}

async function assertNothingLeft(parent: number, domainsBefore: number[]): Promise<void> {
  assert.deepEqual(liveDomids().sort(), [...domainsBefore, parent].sort(), 'no clone domain is left');
  assert.deepEqual(heldClones(), [], 'no clone record is left');
  // The daemon closes a destroyed clone's vchan server (removing its xenstore keys) just after.
  await waitUntil('dom0 serves a vchan only to the parent', () => vchanEndpoints().join() === String(parent), 10_000)
    .catch(() => assert.deepEqual(vchanEndpoints(), [parent], 'dom0 serves a vchan only to the parent'));
}

const gauss = (n: bigint) => (n * (n + 1n)) / 2n;

test('a guest program requests a ticket for 2 over vchan, forks, the clones compute their shares, the parent joins', async (t) => {
  if (skip) return t.skip(skip);
  const name = `sf-api-${process.pid}`;
  const before = liveDomids();
  const parent = await startJob(name, 'node', 'share-sum.mjs', ['2', '1000000', 'join']);
  const end = await jobEnd(name, parent, /SF-JOB (joined|killed|error)/, 900_000);
  t.diagnostic(readConsole(name).split('\n').filter((l) => l.includes('SF-JOB')).join('\n'));
  assert.match(end, /SF-JOB joined destroyed=1,2 lost=0 unconfirmed=0 died=0/, `parent:\n${tail(name)}\nclones:\n${cloneLines(name).join('\n')}`);
  const got = shares(name);
  assert.deepEqual([...got.keys()].sort(), [1, 2], `clones: ${cloneLines(name).join('\n')}`);
  assert.equal([...got.values()].reduce((a, b) => a + b, 0n), gauss(1_000_000n), 'the shares add up to the whole job');
  await assertNothingLeft(parent, before);
  assert.equal(xc.domainInfo(parent).shutdownReason, undefined, 'the parent runs on');
  await endJob(parent); // the next job needs its memory
});

test('the same job from a shell script through the sf-* wrappers', async (t) => {
  if (skip) return t.skip(skip);
  const name = `sf-sh-${process.pid}`;
  const before = liveDomids();
  const parent = await startJob(name, 'shell', 'share-sum.sh', ['2', '3000']);
  const end = await jobEnd(name, parent, /SF-JOB (joined|error)/, 900_000);
  t.diagnostic(readConsole(name).split('\n').filter((l) => l.includes('SF-JOB')).join('\n'));
  assert.match(end, /SF-JOB joined rc=0 joined t-\S+: 2 clones, destroyed 1 2/, `parent:\n${tail(name)}\nclones:\n${cloneLines(name).join('\n')}`);
  const got = shares(name);
  assert.deepEqual([...got.keys()].sort(), [1, 2]);
  assert.equal([...got.values()].reduce((a, b) => a + b, 0n), gauss(3000n));
  await assertNothingLeft(parent, before);
  await endJob(parent);
});

test('sf_kill from the guest ends clones that are still working', async (t) => {
  if (skip) return t.skip(skip);
  const name = `sf-kill-${process.pid}`;
  const before = liveDomids();
  const parent = await startJob(name, 'node', 'share-sum.mjs', ['2', '0', 'kill', '60']);
  const end = await jobEnd(name, parent, /SF-JOB (killed|joined|error)/, 900_000);
  t.diagnostic(readConsole(name).split('\n').filter((l) => l.includes('SF-JOB')).join('\n'));
  assert.match(end, /SF-JOB killed destroyed=1,2 lost=0 unconfirmed=0 died=0 in-ms=\d+/, `parent:\n${tail(name)}`);
  assert.ok(cloneLines(name).some((l) => /SF-JOB working/.test(l)), `the clones were at work when killed:\n${cloneLines(name).join('\n')}`);
  t.diagnostic(`sf_kill of 2 working clones, as the guest saw it: ${/in-ms=(\d+)/.exec(end)![1]} ms (emulated)`);
  await assertNothingLeft(parent, before);
  await endJob(parent);
});
