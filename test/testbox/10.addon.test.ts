// The addon against the real hypervisor: interfaces, version, physinfo, dom0 in the list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadAddon, isNativeXenError } from '../../lib/xen/native.js';
import { openXen } from './helpers.js';

test('addon is built with Xen headers and every Xen library loads', () => {
  const addon = loadAddon();
  assert.equal(addon.builtWithXen, true);
  for (const lib of addon.libraries()) assert.ok(lib.loaded, `${lib.name}: ${lib.error}`);
});

test('every Xen interface opens in dom0', () => {
  for (const i of loadAddon().probeInterfaces()) assert.ok(i.ok, `${i.name}: ${i.error}`);
});

test('version is Xen 4.17 and physinfo reports hvm and hap', () => {
  const xc = openXen();
  try {
    const v = xc.version();
    assert.equal(`${v.major}.${v.minor}`, '4.17');
    assert.match(v.capabilities, /hvm-3\.0-x86_64/);
    const p = xc.physinfo();
    assert.equal(p.capabilities.hvm, true, 'hvm');
    assert.equal(p.capabilities.hap, true, 'hap');
    assert.ok(p.nrCpus >= 1);
    assert.ok(p.totalPages > p.freePages && p.freePages > 0);
  } finally {
    xc.close();
  }
});

test('dom0 is in the domain list, running, PV', () => {
  const xc = openXen();
  try {
    const dom0 = xc.listDomains().find((d) => d.domid === 0);
    assert.ok(dom0, 'domain 0 listed');
    assert.equal(dom0.type, 'pv');
    assert.equal(dom0.dying, false);
    assert.ok(dom0.totPages > 0);
    assert.ok(dom0.onlineVcpus >= 1);
  } finally {
    xc.close();
  }
});

test('an unknown domain gives an error naming the call, errno and domain', () => {
  const xc = openXen();
  try {
    for (const op of [() => xc.pause(31000), () => xc.unpause(31000), () => xc.domainInfo(31000)]) {
      assert.throws(op, (e: unknown) => {
        assert.ok(isNativeXenError(e), String(e));
        assert.match(e.call, /^xc_domain_/);
        assert.equal(e.code, 'ESRCH');
        assert.match(e.message, /domain 31000/);
        return true;
      });
    }
  } finally {
    xc.close();
  }
});

test('a closed handle refuses further calls', () => {
  const xc = openXen();
  xc.close();
  assert.throws(() => xc.listDomains(), /closed/);
});
