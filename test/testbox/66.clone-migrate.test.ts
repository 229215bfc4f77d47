// xl migrate moves a settled clone from box 1 to box 2, where it runs on from where it was:
// once settled, a clone is an ordinary domain that needs neither memtap nor the parent's host.
// The boxes have no ssh, so xl's stream goes through migrate-transport.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon } from '../../lib/xen/native.js';
import { readConsole, waitForConsole } from '../../lib/xen/console.js';
import { destroyClone } from '../../lib/descriptor/restore.js';
import type { LazyCloneResult } from '../../lib/clone/lazy.js';
import { destroyQuietly, domainIds, env, GUEST_BRIDGE, openXen, startTestGuest, waitUntil } from './helpers.js';
import { serveMigrateReceive } from './migrate-transport.js';

const BOX1 = '10.99.0.1';
const BOX2 = '10.99.0.2';
const MIGRANT = 'sf-migrant';
const skip = env.hosts < 2 ? 'single host' : env.flavour === 'stock' ? 'Debian\'s Xen has no mem_paging' : env.box > 2 ? 'boxes 1 and 2 take part' : false;
const xc = openXen();
const xs = new (loadAddon().XenStore)();
const work = mkdtempSync(join(tmpdir(), 'sf-migrate-'));
let parent: number | undefined;
let fork: LazyCloneResult | undefined;

after(async () => {
  for (const c of fork?.clones ?? []) await destroyClone(xc, xs, c.domid, c.uuid).catch(() => {});
  await destroyQuietly(xc, parent);
  if (env.box === 2) spawnSync('xl', ['destroy', MIGRANT]);
  xs.close();
  xc.close();
  rmSync(work, { recursive: true, force: true });
});

function run(cmd: string, args: string[], timeout = 600_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status}): ${r.stdout} ${r.stderr}`);
  return r.stdout;
}

const counts = (name: string) => [...readConsole(name).matchAll(/SF-COUNT (\d+) vmid=/g)].map((m) => Number(m[1]));

async function migrateFromBox1(t: { diagnostic: (s: string) => void }): Promise<void> {
  const name = `sf-mig-parent-${process.pid}`;
  parent = await startTestGuest(name, 'pvh', '', 128, [`bridge=${GUEST_BRIDGE}`]);
  await waitForConsole(name, /SF-COUNT \d+ vmid=0/, 120_000, 2);
  fork = JSON.parse(run(process.execPath, ['dist/lib/cli/main.js', 'clone', String(parent), '-n', '1', '--json', '--state-dir', join(work, 'state')])) as LazyCloneResult;
  const c = fork.clones[0]!;
  await waitForConsole(c.name, /SF-COUNT \d+ vmid=1/, 180_000, 2);
  run(process.execPath, ['dist/lib/cli/main.js', 'settle', String(c.domid)]);
  // The name box 2 waits for; xl carries it in the configuration it sends.
  run('xl', ['rename', String(c.domid), MIGRANT]);
  const transport = `${process.execPath} ${join(process.cwd(), 'dist/test/testbox/migrate-transport.js')}`;
  // Box 2's receiver may still be starting.
  await waitUntil('xl migrate to box 2', () => spawnSync('xl', ['migrate', '-s', transport, MIGRANT, BOX2], { encoding: 'utf8', timeout: 600_000 }).status === 0, 900_000, 10_000);
  assert.ok(!domainIds(xc).includes(c.domid), 'the clone left box 1');
  t.diagnostic(`clone ${c.domid} migrated to box 2 after ${counts(c.name).length} counts here`);
}

async function receiveOnBox2(t: { diagnostic: (s: string) => void }): Promise<void> {
  const server = serveMigrateReceive(BOX2);
  try {
    await waitUntil(`${MIGRANT} arrives from box 1`, () => spawnSync('xl', ['domid', MIGRANT]).status === 0, 1_500_000, 1_000);
    // xl migrate-receive unpauses it once the stream is in; its console continues the clone's
    // count. libxl builds it as "<name>--incoming" and renames it after: xenconsoled keeps the
    // log it opened under the first name.
    const consoleName = `${MIGRANT}--incoming`;
    await waitForConsole(consoleName, /SF-COUNT \d+ vmid=/, 180_000, 2);
    const seen = counts(consoleName);
    assert.ok(Math.min(...seen) > 0, `the migrated clone resumed its count (${seen.slice(0, 3).join(',')}...), it did not boot`);
    assert.doesNotMatch(readConsole(consoleName), /SF-AGENT up /, 'it resumed; it did not boot');
    t.diagnostic(`the migrant counts on from ${Math.min(...seen)}`);
  } finally {
    server.close();
  }
}

test('xl migrate moves a settled clone from box 1 to box 2, where it runs on', { skip, timeout: 1_700_000 }, async (t) => {
  if (env.box === 1) await migrateFromBox1(t);
  else await receiveOnBox2(t);
});
