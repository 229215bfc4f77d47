// Clones built from a descriptor and its memory image: a paused copy with its xenstore home,
// destroy by xl and by snowflock, running clones that continue the parent's count with their
// own vmid, a clone of a clone, and the CLI's clone -n.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { waitForConsole } from '../../lib/xen/console.js';
import { restoreDescriptor, destroyClone, type Restored } from '../../lib/descriptor/restore.js';
import { domainIds, waitUntil } from './helpers.js';
import { Family } from './family.js';

const family = new Family();
const { xc, xs, work, parentName, image, clones } = family;

before(async () => {
  await family.startParent();
  await family.captureParent();
});
after(() => family.dispose());

test('restore builds a paused copy with the parent\'s memory, a xenstore home and its vmid', async () => {
  const c = await restoreDescriptor(xc, xs, family.descriptor, { memoryImage: image, vmid: 1, name: `${parentName}-c1`, start: false });
  clones.push(c);
  const info = xc.domainInfo(c.domid);
  assert.equal(info.type, 'pvh');
  assert.equal(info.paused, true);
  assert.equal(info.totPages, family.descriptor.meta.memory.pages);
  assert.equal(xs.read(`/local/domain/${c.domid}/snowflock/vmid`), '1');
  assert.equal(xs.read(`/local/domain/${c.domid}/name`), c.name);
  assert.ok(Number(xs.read(`/local/domain/${c.domid}/store/port`)) > 0);
  const xl = execFileSync('xl', ['list'], { encoding: 'utf8' });
  assert.match(xl, new RegExp(`^${c.name}\\s+${c.domid}\\s`, 'm'));
});

test('a clone is destroyed by xl destroy and by snowflock destroy, leaving no xenstore home', async () => {
  const second = await restoreDescriptor(xc, xs, family.descriptor, { memoryImage: image, vmid: 2, name: `${parentName}-c2`, start: false });
  clones.push(second);
  const [a, b] = clones;
  execFileSync('xl', ['destroy', String(a!.domid)]);
  await waitUntil(`domain ${a!.domid} gone`, () => !domainIds(xc).includes(a!.domid), 30_000);
  const out = execFileSync(process.execPath, ['dist/lib/cli/main.js', 'destroy', String(b!.domid), '--json'], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out).destroyed, [b!.domid]);
  await waitUntil(`domain ${b!.domid} gone`, () => !domainIds(xc).includes(b!.domid), 30_000);
  assert.equal(xs.read(`/local/domain/${b!.domid}/name`), null);
  assert.equal(xs.read(`/vm/${b!.uuid}/name`), null);
  clones.splice(0);
});

test('restore: two clones continue the parent\'s count, each with its own vmid; the parent resumes', async (t) => {
  await family.runClones([1, 2], (s) => t.diagnostic(s));
});

test('clone of a clone: a restored clone can itself be saved and restored', async () => {
  await family.cloneOfAClone();
});

test('clones are destroyed by xl destroy and by snowflock, leaving no xenstore home', async () => {
  const [a, b] = clones;
  execFileSync('xl', ['destroy', String(a!.domid)]);
  await waitUntil(`domain ${a!.domid} gone`, () => !domainIds(xc).includes(a!.domid), 30_000);
  await destroyClone(xc, xs, b!.domid, b!.uuid);
  await waitUntil(`domain ${b!.domid} gone`, () => !domainIds(xc).includes(b!.domid), 30_000);
  assert.equal(xs.read(`/local/domain/${b!.domid}/name`), null);
  assert.equal(xs.read(`/vm/${b!.uuid}/name`), null);
});

test('the CLI clones with -n and reports the clones as JSON', async (t) => {
  const run = spawnSync(process.execPath, ['dist/lib/cli/main.js', 'clone', String(family.parent), '-n', '2', '--memory', 'eager', '--json', '--workdir', work], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  assert.equal(run.status, 0, `snowflock clone failed: ${run.stdout} ${run.stderr}`);
  const r = JSON.parse(run.stdout) as { clones: (Restored & { buildMs: number })[]; pauseMs: number; descriptorBytes: number };
  t.diagnostic(`clone -n 2: parent stopped ${r.pauseMs} ms, builds ${r.clones.map((c) => c.buildMs).join('/')} ms, descriptor ${r.descriptorBytes} bytes`);
  assert.equal(r.clones.length, 2);
  assert.deepEqual(r.clones.map((c) => c.vmid), [1, 2]);
  for (const c of r.clones) clones.push(c);
  for (const c of r.clones) await waitForConsole(c.name, new RegExp(`SF-COUNT \\d+ vmid=${c.vmid}`), 120_000, 1);
  const listed = JSON.parse(execFileSync(process.execPath, ['dist/lib/cli/main.js', 'list', '--json'], { encoding: 'utf8' })) as
    { domid: number; name: string | null; clone: { parent: string | null; vmid: number } | null }[];
  for (const c of r.clones) {
    assert.deepEqual(listed.find((d) => d.domid === c.domid), { ...listed.find((d) => d.domid === c.domid)!, name: c.name, clone: { parent: family.parentName, vmid: c.vmid, memory: null } }, 'snowflock list names each clone\'s parent and vmid');
  }
  assert.equal(listed.find((d) => d.domid === family.parent)?.clone, null, 'the parent is no clone');
  const destroyed = execFileSync(process.execPath, ['dist/lib/cli/main.js', 'destroy', ...r.clones.map((c) => String(c.domid)), '--json'], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(destroyed).destroyed, r.clones.map((c) => c.domid));
});
