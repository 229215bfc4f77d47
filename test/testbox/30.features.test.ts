// The doctor's memory-feature probe against the real hypervisor: the verdict must match the
// build we booted, and the probe must leave no domain behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { env, openXen, domainIds } from './helpers.js';

test('probeFeatures reports what this Xen build offers and cleans up its probe domain', async () => {
  const xc = openXen();
  try {
    const before = domainIds(xc);
    const f = await xc.probeFeatures();
    assert.deepEqual(domainIds(xc), before, 'probe domain destroyed');
    assert.equal(f.hap, true);
    if (env.flavour === 'stock') {
      // Debian builds Xen without CONFIG_MEM_PAGING / CONFIG_MEM_SHARING.
      assert.equal(f.memPaging.available, false);
      assert.equal(f.memPaging.errno, 38 /* ENOSYS */);
      assert.equal(f.memSharing.errno, 38);
    } else if (env.flavour === 'custom') {
      assert.equal(f.memPaging.available, true, JSON.stringify(f.memPaging));
      // Compiled in, but Xen 4.17 refuses sharing without Intel VMX; TCG offers only AMD SVM.
      assert.equal(f.memSharing.available, false);
      assert.equal(f.memSharing.errno, 95 /* EOPNOTSUPP */);
    }
    for (const r of [f.memPaging, f.memSharing, f.memAccess]) {
      assert.ok(r.available || (r.reason && r.reason.length > 0), 'a refusal says why');
    }
    if (env.inTestbox) assert.equal(f.memAccess.available, false, 'mem_access needs Intel EPT; the test box CPU is AMD SVM');
  } finally {
    xc.close();
  }
});
