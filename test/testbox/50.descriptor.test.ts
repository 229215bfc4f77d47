// VM descriptors against the real hypervisor: save a running PVH guest's state, and refuse bad
// input without leaving a domain, mapping or xenstore entry behind. Building and running clones
// is in 60.clone-run (opt-in while the known dom0 corruption stands).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitForConsole } from '../../lib/xen/console.js';
import { captureDescriptor } from '../../lib/descriptor/capture.js';
import { restoreDescriptor } from '../../lib/descriptor/restore.js';
import { decodeDescriptor, encodeDescriptor, type Descriptor } from '../../lib/descriptor/format.js';
import { DescriptorError } from '../../lib/descriptor/errors.js';
import { imageHeader } from '../../lib/descriptor/memory-image.js';
import { domainIds, waitUntil } from './helpers.js';
import { Family } from './family.js';

const family = new Family();
const { xc, xs, work, parentName, image, clones } = family;

before(() => family.startParent());
after(() => family.dispose());

let descriptor: Descriptor;

test('save: the parent is suspended, described, and resumes', async () => {
  const r = await family.captureParent(false);
  descriptor = r.descriptor;
  assert.equal(descriptor.meta.source.type, 'pvh');
  assert.equal(descriptor.meta.vm.maxVcpus, 1);
  assert.ok(descriptor.meta.memory.pages > 30000, `pages ${descriptor.meta.memory.pages}`);
  assert.equal(r.imagePages, undefined);
  assert.equal(descriptor.meta.memory.imageId, undefined);
  // The pages Xen and the toolstack share with the guest travel in the descriptor.
  const special = descriptor.specialPages.map((p) => p.param).sort((a, b) => a - b);
  assert.ok(special.includes(1) && special.includes(17), `store and console rings in ${special}`);
  assert.equal(xc.domainInfo(family.parent!).shutdownReason, undefined, 'parent resumed');
  await waitForConsole(parentName, new RegExp(`SF-COUNT ${family.countAtSuspend + 2} vmid=0`), 60_000);
});

test('the descriptor file round-trips and is a small fraction of memory', (t) => {
  const bytes = encodeDescriptor(descriptor);
  t.diagnostic(`descriptor ${bytes.length} bytes for ${descriptor.meta.memory.pages} pages: ${((bytes.length / (descriptor.meta.memory.pages * 4096)) * 100).toFixed(3)}% of memory; parent stopped ${descriptor.meta.pauseMs} ms`);
  const again = decodeDescriptor(bytes);
  assert.deepEqual(again.memoryMap, descriptor.memoryMap);
  assert.deepEqual(again.params, descriptor.params);
  assert.ok(again.hvmContext.equals(descriptor.hvmContext));
  assert.ok(bytes.length < descriptor.meta.memory.pages * 4096 * 0.01, `${bytes.length} bytes`);
  writeFileSync(join(work, 'parent.sfd'), bytes);
});

// ---- bad input: one-line errors, nothing left behind ----

function snapshot() {
  return { domains: domainIds(xc), homes: (xs.directory('/local/domain') ?? []).sort() };
}

test('corrupt, truncated and wrong-version descriptors are refused by name', () => {
  const good = readFileSync(join(work, 'parent.sfd'));
  const corrupt = Buffer.from(good);
  corrupt[corrupt.length - 100]! ^= 0xff;
  assert.throws(() => decodeDescriptor(corrupt, 'c.sfd'), (e: Error) => e instanceof DescriptorError && /c\.sfd: section \w+ is corrupt/.test(e.message));
  assert.throws(() => decodeDescriptor(good.subarray(0, 1000), 't.sfd'), /t\.sfd is truncated/);
  const v2 = Buffer.from(good);
  v2.writeUInt16LE(2, 8);
  assert.throws(() => decodeDescriptor(v2, 'v.sfd'), /v\.sfd has format version 2; this snowflock reads version 1/);
  assert.throws(() => decodeDescriptor(Buffer.from('hello world, not a descriptor at all'), 'x'), /not a snowflock descriptor/);
});

test('an unknown domain is named in the error', async () => {
  await assert.rejects(captureDescriptor(xc, xs, 31000), (e: Error & { code?: string }) => e.code === 'ESRCH' && /domain 31000/.test(e.message));
});

test('not enough memory: refused before building, and the native path cleans up too', async () => {
  const before = snapshot();
  const huge: Descriptor = { ...descriptor, meta: { ...descriptor.meta, vm: { ...descriptor.meta.vm, pagingPoolBytes: 64 * 2 ** 30 } } };
  await assert.rejects(restoreDescriptor(xc, xs, huge, { memoryImage: image, vmid: 9, name: `${parentName}-big` }), /not enough free memory on this host/);
  // Past the check, Xen itself runs out while populating: the half-built domain must go.
  const free = xc.physinfo().freePages;
  await assert.rejects(
    xc.buildDomain({
      handle: Buffer.alloc(16, 7), hap: true, maxVcpus: 1, emulationFlags: descriptor.meta.vm.emulationFlags,
      maxPages: free + 65536, pagingPoolBytes: descriptor.meta.vm.pagingPoolBytes,
      tsc: { ...descriptor.meta.tsc, elapsedNsec: BigInt(descriptor.meta.tsc.elapsedNsec) },
      cpuid: descriptor.cpuid, msrs: descriptor.msrs, hvmContext: descriptor.hvmContext, params: descriptor.params,
      populated: [[0, free + 65536]], special: [],
    }),
    (e: Error & { code?: string; call?: string }) => e.call === 'xc_domain_populate_physmap' && e.code === 'ENOMEM' && /ran out of free memory/.test(e.message),
  );
  await waitUntil('no half-built domain', () => domainIds(xc).length === before.domains.length, 30_000);
  assert.deepEqual(snapshot(), before);
});

test('a descriptor without an image, an image of another descriptor, or a missing one, is refused', async () => {
  const before = snapshot();
  await assert.rejects(restoreDescriptor(xc, xs, descriptor, { memoryImage: image, vmid: 9, name: `${parentName}-w` }), /saved without a memory image/);
  const withId: Descriptor = { ...descriptor, meta: { ...descriptor.meta, memory: { ...descriptor.meta.memory, imageId: '11'.repeat(16) } } };
  writeFileSync(image, imageHeader('22'.repeat(16), descriptor.meta.memory.pages));
  await assert.rejects(restoreDescriptor(xc, xs, withId, { memoryImage: image, vmid: 9, name: `${parentName}-x` }), /memory image of another descriptor/);
  await assert.rejects(restoreDescriptor(xc, xs, withId, { memoryImage: join(work, 'nope.mem'), vmid: 9, name: `${parentName}-y` }), /cannot open memory image/);
  assert.deepEqual(snapshot(), before);
});
