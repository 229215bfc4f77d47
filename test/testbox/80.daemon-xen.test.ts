// The sf_* daemons forking a real VM (needs Xen with mem_paging). A master and this host's
// daemon with the Xen backend run in this process; the guests' side of the API is played by
// SfClients over the TCP guest channel that claim the guests' domids (the test guest has no
// Node to run the library itself). A parent asks for 2 clones, they run on memory fetched on
// demand, exit, the parent joins: nothing of the fork remains. Then kill, and bad requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon } from '../../lib/xen/native.js';
import { readConsole, waitForConsole } from '../../lib/xen/console.js';
import { InternalClusterManager } from '../../lib/cluster/index.js';
import { SfClient, SfError, connectTcp, type TicketInfo } from '../../lib/api/index.js';
import { TcpGuestTransport } from '../../lib/daemon/guest-transport.js';
import { HostDaemon } from '../../lib/daemon/host-daemon.js';
import { deriveHostKey } from '../../lib/daemon/host-key.js';
import { Master } from '../../lib/daemon/master.js';
import { MasterServer } from '../../lib/daemon/master-server.js';
import { XenBackend } from '../../lib/daemon/xen-backend.js';
import { destroyQuietly, memPagingSkip, openXen, startTestGuest, waitUntil } from './helpers.js';
import { memPasses, memtestCmdline } from './memtest.js';

const xc = openXen();
const xs = new (loadAddon().XenStore)();
const RECORDS = '/local/domain/0/snowflock/daemon/clones';
const parentName = `sf-dx-${process.pid}`;
const stateDir = mkdtempSync(join(tmpdir(), 'sf-daemon-'));
let skip: string | false = false;
let parent: number | undefined;
let cluster: InternalClusterManager | undefined;
let server: MasterServer | undefined;
let daemon: HostDaemon | undefined;
let guestPort = 0;
const clients: SfClient[] = [];

/** A guest of this host, as the daemon will believe it is. */
function guest(domid: number): SfClient {
  const c = new SfClient(() => connectTcp({ host: '127.0.0.1', port: guestPort, domid }), { retryForMs: 20_000, retryDelayMs: 100 });
  clients.push(c);
  return c;
}

const heldClones = () => (xs.directory(RECORDS) ?? []).map(Number);
const domainNames = () => xc.listDomains().map((d) => xs.read(`/local/domain/${d.domid}/name`) ?? '');

before(async () => {
  skip = await memPagingSkip(xc);
  if (skip) return;
  parent = await startTestGuest(parentName, 'pvh', memtestCmdline({ mb: 64, mode: 'rewrite' }), 256);
  await waitForConsole(parentName, /SF-MEM pass=2 /, 300_000);
  const key = randomBytes(32);
  cluster = new InternalClusterManager({ ticketTtlMs: 60_000 });
  const master = new Master({ cluster, destroyTimeoutMs: 60_000, commandTimeoutMs: 600_000, buildTimeoutMs: 600_000 });
  server = new MasterServer({ master, key, heartbeatMs: 5000 });
  const { port } = await server.listen();
  const guests = new TcpGuestTransport({ port: 0, identify: 'claimed' });
  const hostKey = deriveHostKey(key, 'box1'); // this host's own key: the master derives the same
  daemon = new HostDaemon({
    host: 'box1', hostKey, master: { host: '127.0.0.1', port }, backend: new XenBackend(xc, xs, { advertiseHost: '127.0.0.1', stateDir, hostKey }),
    guests, capacity: { vcpus: 4, memoryMiB: 1024 }, masterSilenceMs: 120_000,
  });
  await daemon.start();
  await daemon.whenRegistered();
  guestPort = guests.port;
});

after(async () => {
  for (const c of clients) c.close();
  await daemon?.close();
  await server?.close();
  await cluster?.close();
  for (const domid of heldClones()) await destroyQuietly(xc, domid);
  await destroyQuietly(xc, parent);
  rmSync(stateDir, { recursive: true, force: true });
  xs.close();
  xc.close();
});

/** Forks the parent into n clones; each clone learns its vmid the way its library would. */
async function fork(n: number): Promise<{ ticket: TicketInfo; clones: { domid: number; vmid: number; client: SfClient }[] }> {
  const api = guest(parent!);
  const ticket = await api.requestTicket(n);
  assert.equal(ticket.granted, n);
  assert.equal(await api.clone(ticket), 0, 'the parent gets vmid 0');
  const clones = await Promise.all(heldClones().map(async (domid) => {
    const client = guest(domid);
    return { domid, vmid: await client.clone(ticket), client };
  }));
  return { ticket, clones };
}

test('ticket for 2, clone, the clones run on memory on demand and exit, the parent joins: nothing remains', async (t) => {
  if (skip) return t.skip(skip);
  const before = domainNames();
  const { ticket, clones } = await fork(2);
  assert.deepEqual(clones.map((c) => c.vmid).sort(), [1, 2]);
  for (const c of clones) {
    const name = xs.read(`/local/domain/${c.domid}/name`)!;
    assert.equal(xs.read(`/local/domain/${c.domid}/snowflock/vmid`), String(c.vmid), 'the guest can read its vmid');
    await waitUntil(`clone ${c.vmid} passes twice`, () => memPasses(name, c.vmid).length >= 2, 300_000);
    assert.ok(memPasses(name, c.vmid).every((p) => p.bad === 0), `clone ${c.vmid}: ${readConsole(name).slice(-400)}`);
  }
  for (const c of clones) await c.client.exit();
  const report = await guest(parent!).join(ticket);
  assert.equal(report.outcome, 'joined');
  assert.deepEqual([...report.destroyed].sort(), [1, 2]);
  assert.deepEqual(domainNames(), before, 'no clone domain is left');
  assert.deepEqual(heldClones(), [], 'no clone record is left');
  assert.equal(xc.domainInfo(parent!).shutdownReason, undefined, 'the parent runs on');
  await waitUntil('the fork\'s memserver finished and removed its files', () => !existsSync(join(stateDir, 'families', ticket.ticket)), 60_000);
});

test('sf_kill ends clones that are still working', async (t) => {
  if (skip) return t.skip(skip);
  const before = domainNames();
  const { ticket, clones } = await fork(2);
  // Working, not just built: each clone has verified its pattern since the fork and its vCPU
  // time still grows right before the kill.
  for (const c of clones) {
    const name = xs.read(`/local/domain/${c.domid}/name`)!;
    await waitUntil(`clone ${c.vmid} passes once`, () => memPasses(name, c.vmid).length >= 1, 300_000);
    const cpu = xc.domainInfo(c.domid).cpuTimeNs;
    await waitUntil(`clone ${c.vmid}'s vCPU time to grow`, () => xc.domainInfo(c.domid).cpuTimeNs > cpu, 30_000);
    const info = xc.domainInfo(c.domid);
    assert.ok(!info.paused && info.shutdownReason === undefined, `clone ${c.vmid} runs: ${JSON.stringify(info)}`);
  }
  const t0 = Date.now();
  const report = await guest(parent!).kill(ticket);
  t.diagnostic(`sf_kill of 2 working clones: ${Date.now() - t0} ms (emulated)`);
  assert.equal(report.outcome, 'killed');
  assert.deepEqual(domainNames(), before);
  assert.deepEqual(heldClones(), []);
});

test('bad requests: join from a child, a used ticket, n <= 0', async (t) => {
  if (skip) return t.skip(skip);
  const { ticket, clones } = await fork(1);
  await assert.rejects(clones[0]!.client.join(ticket), (e: unknown) => e instanceof SfError, 'a child cannot join');
  await assert.rejects(guest(parent!).clone(ticket), (e: unknown) => e instanceof SfError, 'a ticket forks once');
  await assert.rejects(guest(parent!).requestTicket(0), (e: unknown) => e instanceof SfError || e instanceof RangeError);
  await clones[0]!.client.exit();
  await guest(parent!).join(ticket);
  assert.deepEqual(heldClones(), []);
});
