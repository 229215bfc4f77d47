// doctor's disk checks: serving needs qemu-storage-daemon and qemu-img; attaching needs a dom0
// with the nbd and xen-blkback modules, and a "no" always says why.
import { describe, expect, it } from 'vitest';
import { diskChecks, type DiskProbe } from '../../../lib/doctor/disk-checks.js';

const here: DiskProbe = {
  qsd: 'qemu-storage-daemon version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)',
  qemuImg: 'qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)',
  nbd: 'unknown', blkback: 'unknown', dom0: false,
};
const byId = (p: DiskProbe) => Object.fromEntries(diskChecks(p).map((c) => [c.id, c]));

describe('doctor: disks', () => {
  it('a build host without Xen can serve disks but not attach them, and says why', () => {
    const c = byId(here);
    expect(c['disk.serve']).toMatchObject({ status: 'ok', group: 'disk' });
    expect(c['disk.serve']!.detail).toContain('7.2.22');
    expect(c['disk.attach']!.status).toBe('warn');
    expect(c['disk.attach']!.detail).toMatch(/not a Xen dom0/);
    expect(c['disk.attach']!.detail).toMatch(/nbd module not loaded and modinfo unavailable/);
  });

  it('a missing qemu-storage-daemon or qemu-img is named with its package', () => {
    expect(byId({ ...here, qsd: undefined })['disk.serve']!.detail).toMatch(/missing qemu-storage-daemon \(apt-get install qemu-system-common\)/);
    expect(byId({ ...here, qemuImg: undefined })['disk.serve']!.detail).toMatch(/missing qemu-img \(apt-get install qemu-utils\)/);
  });

  it('an old daemon is a warning', () => {
    expect(byId({ ...here, qsd: 'qemu-storage-daemon version 6.2.0' })['disk.serve']!.status).toBe('warn');
  });

  it('a dom0 with nbd and blkback can attach; without blkback it cannot', () => {
    const dom0: DiskProbe = { ...here, dom0: true, nbd: 'available', blkback: 'loaded' };
    expect(byId(dom0)['disk.attach']!.status).toBe('ok');
    const c = byId({ ...dom0, blkback: 'missing' })['disk.attach']!;
    expect(c.status).toBe('warn');
    expect(c.detail).toMatch(/no xen-blkback module/);
  });
});
