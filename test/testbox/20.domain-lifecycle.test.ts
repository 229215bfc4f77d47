// A PVH test guest started with xl, then seen, paused, unpaused and destroyed through the addon.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { waitForConsole } from '../../lib/xen/console.js';
import { destroyQuietly, domainIds, openXen, sleep, startTestGuest, waitUntil } from './helpers.js';

const xc = openXen();
let domid: number | undefined;
const name = `sf-life-${process.pid}`;
after(async () => {
  await destroyQuietly(xc, domid);
  xc.close();
});

const lastCount = async (min = 1) => Number((await waitForConsole(name, /SF-COUNT (\d+)/, 120_000, min)).at(-1)![1]);

test('a PVH test guest starts and counts on its console', async () => {
  domid = await startTestGuest(name, 'pvh');
  await waitForConsole(name, /SF-COUNT (\d+)/, 120_000, 2);
});

test('the addon lists the guest as PVH with its memory', () => {
  assert.ok(domid !== undefined);
  const d = xc.listDomains().find((x) => x.domid === domid);
  assert.ok(d, `domain ${domid} in the list`);
  assert.equal(d.type, 'pvh');
  assert.equal(d.hap, true);
  assert.equal(d.paused, false);
  // 128 MiB guest: tot_pages is within a few MiB of 32768 pages.
  assert.ok(d.totPages > 30000 && d.totPages < 34000, `totPages ${d.totPages}`);
});

test('pause stops the guest: state p, no CPU time accrues, the counter stops', async () => {
  assert.ok(domid !== undefined);
  xc.pause(domid);
  const before = xc.domainInfo(domid);
  assert.equal(before.paused, true);
  assert.equal(before.state[2], 'p');
  const countAtPause = await lastCount();
  await sleep(2500);
  const later = xc.domainInfo(domid);
  assert.equal(later.cpuTimeNs, before.cpuTimeNs, 'a paused domain runs no vCPU time');
  assert.equal(await lastCount(), countAtPause, 'no console line while paused');
});

test('unpause resumes it: the counter moves on', async () => {
  assert.ok(domid !== undefined);
  const countAtPause = await lastCount();
  xc.unpause(domid);
  assert.equal(xc.domainInfo(domid).paused, false);
  const seen = Number((await waitForConsole(name, new RegExp(`SF-COUNT (${countAtPause + 1})`), 60_000))[0]![1]);
  assert.equal(seen, countAtPause + 1);
});

test('destroy removes it from the domain list', async () => {
  assert.ok(domid !== undefined);
  const id = domid;
  await xc.destroy(id);
  await waitUntil(`domain ${id} to disappear`, () => !domainIds(xc).includes(id), 30_000);
  domid = undefined;
  await assert.rejects(xc.destroy(id), (e: Error & { code?: string }) => e.code === 'ESRCH');
});
