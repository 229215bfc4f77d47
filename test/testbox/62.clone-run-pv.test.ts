// PV clones: a running PV guest is saved through libxenguest's migration stream (page tables
// and p2m canonicalised to pseudo-physical frames), cut into a descriptor and a memory image,
// and restored into clones that continue the parent's count with their own vmid; a clone of a
// clone; destroy leaves no domain or xenstore home. PV clones are eager (no HAP, no memtap).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { waitForConsole } from '../../lib/xen/console.js';
import { captureDescriptor } from '../../lib/descriptor/capture.js';
import { decodeDescriptor, encodeDescriptor } from '../../lib/descriptor/format.js';
import { destroyClone } from '../../lib/descriptor/restore.js';
import { DescriptorError } from '../../lib/descriptor/errors.js';
import { domainIds, waitUntil } from './helpers.js';
import { Family } from './family.js';

const family = new Family('pv');
const { xc, xs, image, clones } = family;

before(async () => {
  await family.startParent();
});
after(() => family.dispose());

test('a PV guest cannot be captured without a memory image (its clones are eager)', async () => {
  await assert.rejects(captureDescriptor(xc, xs, family.parent!), (e: Error) => e instanceof DescriptorError && /PV guest.*eager/.test(e.message));
  assert.equal(xc.domainInfo(family.parent!).shutdownReason, undefined, 'the parent was not suspended');
});

test('snowflock clone on demand refuses a PV guest by name; the parent runs on', () => {
  const run = spawnSync(process.execPath, ['dist/lib/cli/main.js', 'clone', String(family.parent), '-n', '1'], { encoding: 'utf8', timeout: 120_000 });
  assert.notEqual(run.status, 0);
  assert.match(run.stderr, /PV guest: memory on demand needs HAP.*--memory eager/);
  assert.equal(xc.domainInfo(family.parent!).shutdownReason, undefined);
});

test('save: the PV descriptor holds the stream without its page data; the image holds the pages', async (t) => {
  const r = await family.captureParent();
  const d = family.descriptor;
  assert.equal(d.meta.source.type, 'pv');
  assert.ok(d.pvStream && d.pvStream.head.length > 40 && d.pvStream.tail.length > 8);
  assert.equal(statSync(image).size, 4096 + d.meta.memory.imageBytes!);
  const file = encodeDescriptor(d);
  assert.deepEqual(decodeDescriptor(file).pvStream, d.pvStream);
  const guestBytes = d.meta.vm.maxPages * 4096;
  t.diagnostic(`descriptor ${file.length} B = ${((file.length / guestBytes) * 100).toFixed(3)}% of ${guestBytes >> 20} MiB; ${d.meta.memory.pages} pages with data; pause so far ${r.pauseMs} ms`);
});

test('restore: two PV clones continue the parent\'s count, each with its own vmid; the parent resumes', async (t) => {
  await family.runClones([1, 2], (s) => t.diagnostic(s));
});

test('clone of a PV clone', async () => {
  await family.cloneOfAClone();
});

test('a PV clone is a domain xl manages: list -l, mem-set, save and restore', async () => {
  const c = clones[1]!;
  const listed = JSON.parse(execFileSync('xl', ['list', '-l', String(c.domid)], { encoding: 'utf8' })) as { config: { c_info: { name: string; uuid: string } } }[];
  assert.equal(listed[0]?.config.c_info.name, c.name);
  assert.equal(listed[0]?.config.c_info.uuid, c.uuid);
  assert.equal(xs.read(`/local/domain/${c.domid}/memory/target`), xs.read(`/local/domain/${family.parent}/memory/target`), 'the balloon target is the parent\'s');
  execFileSync('xl', ['mem-set', String(c.domid), '100m']);
  assert.equal(xs.read(`/local/domain/${c.domid}/memory/target`), '102400');
  const file = `${family.work}/pv-clone.xlsave`;
  const atSave = Math.max(...family.counts(c.name, c.vmid));
  execFileSync('xl', ['save', String(c.domid), file], { timeout: 300_000 });
  execFileSync('xl', ['restore', file], { timeout: 300_000 });
  const restored = Number(execFileSync('xl', ['domid', c.name], { encoding: 'utf8' }).trim());
  try {
    await waitForConsole(c.name, new RegExp(`SF-COUNT ${atSave + 2} vmid=`), 120_000);
  } finally {
    execFileSync('xl', ['destroy', String(restored)]);
    rmSync(file, { force: true });
  }
});

test('PV clones are destroyed by xl destroy and by snowflock, leaving no xenstore home', async () => {
  for (const [i, c] of clones.entries()) {
    if (i === 0) execFileSync('xl', ['destroy', String(c.domid)]);
    else await destroyClone(xc, xs, c.domid, c.uuid);
    await waitUntil(`domain ${c.domid} gone`, () => !domainIds(xc).includes(c.domid), 30_000);
    assert.equal(xs.read(`/local/domain/${c.domid}/name`), null);
  }
  clones.splice(0);
});
