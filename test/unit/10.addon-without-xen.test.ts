// The addon on a machine that is not a Xen dom0 (CI, laptops): it loads, reports its
// libraries, and every Xen call fails with the call, errno and Xen's own log line.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { loadAddon, isNativeXenError } from '../../lib/xen/native.js';
import { openXen, XenUnavailableError } from '../../lib/xen/control.js';

const onXen = existsSync('/dev/xen/privcmd') || existsSync('/proc/xen/privcmd');

describe.skipIf(onXen)('addon without Xen', () => {
  it('loads and knows whether it was built with Xen headers', () => {
    const addon = loadAddon();
    expect(typeof addon.builtWithXen).toBe('boolean');
    expect(Array.isArray(addon.libraries())).toBe(true);
  });

  it('opening xenctrl fails with call, errno and the line Xen logged', () => {
    const addon = loadAddon();
    let error: unknown;
    try {
      new addon.XenControl();
    } catch (e) {
      error = e;
    }
    expect(isNativeXenError(error)).toBe(true);
    if (!isNativeXenError(error)) return;
    if (addon.builtWithXen) {
      expect(error.call).toBe('xc_interface_open');
      expect(error.code).toBe('ENOENT');
      expect(error.errno).toBe(2);
      expect(error.xenLog).toMatch(/privileged command interface/);
      expect(error.message).toContain(error.xenLog);
    } else {
      expect(error.code).toBe('ENOXEN');
      expect(error.message).toMatch(/built without Xen headers/);
    }
  });

  it('openXen turns that into XenUnavailableError with a hint', () => {
    expect(() => openXen()).toThrow(XenUnavailableError);
    expect(() => openXen()).toThrow(/not a Xen dom0|built without Xen headers/);
  });

  it('interfaces report why they do not open', () => {
    const addon = loadAddon();
    if (!addon.builtWithXen) return;
    const probes = addon.probeInterfaces();
    expect(probes.map((p) => p.name)).toEqual(['xenctrl', 'xenforeignmemory', 'xenevtchn', 'xengnttab', 'xenstore']);
    for (const p of probes) {
      expect(p.ok).toBe(false);
      expect(p.error).toBeTruthy();
    }
  });
});
