// dom0's view through the host daemon's admin socket (`snowflock daemon status`, `hosts`,
// `families`): a real Unix socket of mode 600, answers relayed from the master, the CLI's tables
// and exit codes, and a second daemon refused on a live socket but not on a stale one.
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { SfClient, connectTcp } from '../../../lib/api/index.js';
import { AdminServer, askHostDaemon } from '../../../lib/daemon/admin-socket.js';
import { familiesTable, hostsTable } from '../../../lib/cli/commands/cluster.js';
import { reportError } from '../../../lib/cli/errors.js';
import { startLab, type Lab } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'sf-admin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let lab: Lab | null = null;
afterEach(async () => {
  await lab?.close();
  lab = null;
});

it('status, hosts and families: what the daemon holds and the master\'s whole view', async () => {
  const socket = join(dir, 'run', 'host.sock');
  lab = await startLab({ adminSocket: socket });
  expect(statSync(socket).mode & 0o777).toBe(0o600);
  lab.childProgram = () => new Promise(() => {}); // the clones stay at work
  const parent = new SfClient(() => connectTcp({ host: '127.0.0.1', port: lab!.hosts.h1.port, domid: 7 }));
  const t = await parent.requestTicket(2);
  await parent.clone(t);
  const status = await askHostDaemon(socket, 'status');
  expect(status).toMatchObject({ host: 'h1', master: { connected: true } });
  expect(status.clones.map((c) => c.fork)).toEqual(status.clones.map(() => t.ticket));
  const hosts = await askHostDaemon(socket, 'hosts');
  expect(hosts.hosts.map((h) => h.name).sort()).toEqual(['h1', 'h2']);
  expect(hostsTable(hosts)).toMatch(/^HOST\s+LINK.*\nh1\s+up/);
  const families = await askHostDaemon(socket, 'families');
  expect(families.families).toHaveLength(1);
  expect(families.families[0]!.children.map((c) => c.vmid).sort()).toEqual([1, 2]);
  expect(familiesTable(families)).toMatch(/h1:7\s+-\s+parent\s+h1\/7\s+running/);
  expect(familiesTable(families)).toMatch(/clone 1/);
  await parent.kill(t);
  expect(familiesTable(await askHostDaemon(socket, 'families'))).toBe('no fork families');
  parent.close();
});

it('no daemon: the error says so (the CLI exits 3); a live socket is not taken over, a stale one is', async () => {
  const missing = join(dir, 'nobody.sock');
  const refused = await askHostDaemon(missing, 'status').catch((e: unknown) => e);
  expect(refused).toMatchObject({ code: 'channel-closed', message: expect.stringMatching(/no host daemon answers on .*nobody\.sock/) });
  expect(reportError(refused, true)).toBe(3);
  const live = join(dir, 'live.sock');
  const first = new AdminServer(live, { status: () => { throw new Error('unused'); }, hosts: async () => ({ hosts: [] }), families: async () => ({ families: [], truncated: false }) });
  await first.listen();
  const second = new AdminServer(live, { status: () => { throw new Error('unused'); }, hosts: async () => ({ hosts: [] }), families: async () => ({ families: [], truncated: false }) });
  await expect(second.listen()).rejects.toThrow(/another host daemon already listens/);
  await first.close();
  // A file left where a socket was (a daemon that died): taken over.
  const stale = join(dir, 'stale.sock');
  writeFileSync(stale, '');
  const third = new AdminServer(stale, { status: () => { throw new Error('unused'); }, hosts: async () => ({ hosts: [] }), families: async () => ({ families: [], truncated: false }) });
  await third.listen();
  expect((await askHostDaemon(stale, 'hosts')).hosts).toEqual([]);
  await third.close();
  expect(existsSync(stale)).toBe(false);
});
