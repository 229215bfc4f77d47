import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diskTarget, parseDiskTarget, readCloneVbdBackends, readVbds, removeCloneVbds, waitVbdsClosed, writeCloneVbds, type CloneVbd } from '../../../lib/xen/clone-vbd.js';
import { memoryStore } from '../../memory-xenstore.js';
import type { XenStore } from '../../../lib/xen/native.js';

/** A vbd as libxl lays out a phy: disk whose hotplug script was block-snowflock (it adds snowflock-disk). */
function libxlVbd(xs: XenStore, domid: number, devid: number, dev: string, target?: string, backendDomain = 0): void {
  const front = `/local/domain/${domid}/device/vbd/${devid}`;
  const back = `/local/domain/${backendDomain}/backend/vbd/${domid}/${devid}`;
  xs.write(`${front}/backend`, back);
  xs.write(`${front}/virtual-device`, String(devid));
  xs.write(`${back}/frontend`, front);
  xs.write(`${back}/frontend-id`, String(domid));
  xs.write(`${back}/dev`, dev);
  xs.write(`${back}/mode`, 'w');
  xs.write(`${back}/params`, target ?? '/images/web.raw');
  if (target) xs.write(`${back}/snowflock-disk`, target.split(':').slice(0, 2).join(':'));
}

/** The store, with every write in order. */
function recordingStore() {
  const xs = memoryStore();
  const writes: string[] = [];
  const write = xs.write.bind(xs);
  xs.write = (p: string, v: string) => {
    writes.push(p);
    write(p, v);
  };
  return Object.assign(xs, { writes });
}

const CLONE: CloneVbd = {
  record: { devid: 51712, vdev: 'xvda', mode: 'w', family: 'web', vm: 'web', disk: 'xvda' },
  target: { family: 'web', vm: 'web-ab12-1', disk: 'xvda' },
  device: '/dev/nbd1',
  physicalDevice: '2b:10',
};

describe('a clone\'s vbds in xenstore', () => {
  it('reads the parent\'s family disks, and lists the other vbds apart', () => {
    const xs = memoryStore();
    libxlVbd(xs, 5, 51712, 'xvda', 'web:web/xvda:/images/web.raw');
    libxlVbd(xs, 5, 51728, 'xvdb'); // a plain phy:/file: disk
    libxlVbd(xs, 5, 51744, 'xvdc', 'web:web/xvdc', 3); // served by another domain
    expect(readVbds(xs, 5)).toEqual({
      vbds: [{ devid: 51712, vdev: 'xvda', mode: 'w', family: 'web', vm: 'web', disk: 'xvda' }],
      others: ['51728', '51744'],
    });
  });

  it('trusts only dom0\'s backend: a frontend pointing at another domain\'s backend is not a family disk', () => {
    const xs = memoryStore();
    libxlVbd(xs, 7, 51712, 'xvda', 'web:web/xvda');
    xs.write('/local/domain/5/device/vbd/51712/backend', '/local/domain/0/backend/vbd/7/51712'); // domain 5 claims 7's disk
    expect(readVbds(xs, 5)).toEqual({ vbds: [], others: ['51712'] });
  });

  it('lays a clone\'s vbd out as libxl lays out a phy: disk, state written last, with libxl\'s permissions', () => {
    const xs = recordingStore();
    writeCloneVbds(xs, 9, [CLONE]);
    const back = '/local/domain/0/backend/vbd/9/51712';
    const front = '/local/domain/9/device/vbd/51712';
    const read = (p: string) => xs.read(p);
    expect(Object.fromEntries(['frontend', 'frontend-id', 'online', 'removable', 'bootable', 'dev', 'type', 'mode', 'device-type', 'params', 'physical-device', 'physical-device-path', 'snowflock-disk', 'script', 'state'].map((k) => [k, read(`${back}/${k}`)]))).toEqual({
      'frontend': front, 'frontend-id': '9', 'online': '1', 'removable': '0', 'bootable': '1', 'dev': 'xvda', 'type': 'phy', 'mode': 'w',
      'device-type': 'disk', 'params': '/dev/nbd1', 'physical-device': '2b:10', 'physical-device-path': '/dev/nbd1', 'snowflock-disk': 'web:web-ab12-1/xvda',
      // libxl reads the hotplug script from the backend when xl destroy removes the vbd
      'script': '/etc/xen/scripts/block-snowflock', 'state': '1',
    });
    expect(Object.fromEntries(['backend', 'backend-id', 'virtual-device', 'device-type', 'state'].map((k) => [k, read(`${front}/${k}`)]))).toEqual({
      'backend': back, 'backend-id': '0', 'virtual-device': '51712', 'device-type': 'disk', 'state': '1',
    });
    expect(xs.perms.get(back)).toEqual([{ domid: 0 }, { domid: 9, read: true }]);
    expect(xs.perms.get(front)).toEqual([{ domid: 9 }, { domid: 0, read: true }]);
    expect(xs.perms.get(`${front}/state`)).toEqual([{ domid: 9 }, { domid: 0, read: true }]);
    // the frontend exists before the backend; the backend's state comes after everything else of it
    const backWrites = xs.writes.filter((p) => p.startsWith(back));
    expect(backWrites.at(-1)).toBe(`${back}/state`);
    expect(xs.writes.indexOf(`${front}/backend`)).toBeLessThan(xs.writes.indexOf(`${back}/frontend`));
    expect(backWrites.indexOf(`${back}/physical-device`)).toBeLessThan(backWrites.indexOf(`${back}/state`));
    // libxl's own record of the device: xl destroy takes it down and runs block-snowflock remove
    const libxl = '/libxl/9/device/vbd/51712';
    expect(Object.fromEntries(['frontend', 'backend', 'params', 'script', 'type', 'mode', 'dev'].map((k) => [k, read(`${libxl}/${k}`)]))).toEqual({
      frontend: front, backend: back, params: '/dev/nbd1', script: '/etc/xen/scripts/block-snowflock', type: 'phy', mode: 'w', dev: 'xvda',
    });
  });

  it('a clone\'s vbd is a family disk again (a fork of the clone freezes its overlay)', () => {
    const xs = memoryStore();
    writeCloneVbds(xs, 9, [CLONE]);
    expect(readVbds(xs, 9).vbds).toEqual([{ devid: 51712, vdev: 'xvda', mode: 'w', family: 'web', vm: 'web-ab12-1', disk: 'xvda' }]);
  });

  it('reads back what destroy must let go, and removes the backends', () => {
    const xs = memoryStore();
    writeCloneVbds(xs, 9, [CLONE, { ...CLONE, record: { ...CLONE.record, devid: 51728, vdev: 'xvdb', disk: 'xvdb' }, target: { ...CLONE.target, disk: 'xvdb' }, device: '/dev/nbd2', physicalDevice: '2b:20' }]);
    xs.write('/local/domain/0/backend/vbd/9/51744/params', '/etc/passwd'); // not ours: never detached
    expect(readCloneVbdBackends(xs, 9)).toEqual([
      { devid: 51712, device: '/dev/nbd1', target: { family: 'web', vm: 'web-ab12-1', disk: 'xvda' } },
      { devid: 51728, device: '/dev/nbd2', target: { family: 'web', vm: 'web-ab12-1', disk: 'xvdb' } },
      { devid: 51744, device: null, target: null },
    ]);
    removeCloneVbds(xs, 9);
    expect(xs.directory('/local/domain/0/backend/vbd/9')).toBeNull();
    expect(readCloneVbdBackends(xs, 9)).toEqual([]);
  });

  it('waits for blkback to let go: a removed node is not enough while the kernel still has the backend device', async () => {
    const xs = memoryStore();
    writeCloneVbds(xs, 9, [CLONE]);
    removeCloneVbds(xs, 9);
    const sysfs = mkdtempSync(join(tmpdir(), 'sf-xen-backend-'));
    try {
      mkdirSync(join(sysfs, 'vbd-9-51712'));
      expect(await waitVbdsClosed(xs, 9, [51712], 300, sysfs)).toEqual([51712]); // still held
      setTimeout(() => rmSync(join(sysfs, 'vbd-9-51712'), { recursive: true }), 100);
      expect(await waitVbdsClosed(xs, 9, [51712], 5000, sysfs)).toEqual([]);
    } finally {
      rmSync(sysfs, { recursive: true, force: true });
    }
  });

  it('parses family disk names strictly', () => {
    expect(parseDiskTarget('web:web/xvda')).toEqual({ family: 'web', vm: 'web', disk: 'xvda' });
    expect(diskTarget({ family: 'f', vm: 'v', disk: 'd' })).toBe('f:v/d');
    for (const bad of ['', 'web', 'web:web', 'web:web/xvda/x', '-x:web/xvda', 'web:../xvda', 'web:web/xv da', `${'a'.repeat(65)}:v/d`]) expect(parseDiskTarget(bad)).toBeNull();
  });
});
