// libxl's record of a clone: the parent's configuration with the clone's identity, memory and
// vifs; the memory limits a descriptor carries; the parent's record read back with its checks.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cloneDomainConfig, LibxlConfigError, nicScript, readDomainConfig, removeDomainConfig, userdataPath, writeDomainConfig, type LibxlConfig,
} from '../../../lib/xen/libxl-config.js';
import { readParentRecord } from '../../../lib/descriptor/parent-record.js';
import { cloneMemoryKiB } from '../../../lib/descriptor/restore.js';
import { decodeDescriptor, encodeDescriptor } from '../../../lib/descriptor/format.js';
import { writeDomainEntries } from '../../../lib/xen/domain-xenstore.js';
import { memoryStore } from '../../memory-xenstore.js';
import { sampleDescriptor } from '../../fixtures/descriptor.js';

const parentConfig = (): LibxlConfig => ({
  c_info: { type: 'pvh', name: 'web', uuid: '11111111-2222-3333-4444-555555555555' },
  b_info: { max_vcpus: 2, max_memkb: 131072, target_memkb: 131072, kernel: '/boot/vmlinux', type: { pvh: {} } },
  disks: [{ pdev_path: '/dev/vg/web' }],
  nics: [{ devid: 0, mac: '00:16:3e:00:00:01', bridge: 'xenbr0', script: 'vif-bridge' }, { devid: 1, mac: '00:16:3e:00:00:02', bridge: 'xenbr1' }],
  on_crash: 'destroy',
});

const identity = {
  name: 'web-c1', uuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', type: 'pvh' as const, vcpus: 2, staticMaxKiB: 131072, targetKiB: 122880,
  nics: [{ nic: { devid: 0, mac: '00:16:3e:00:00:01', bridge: 'xenbr0' }, mac: '00:16:3e:12:34:56' }],
};

describe('the clone\'s libxl configuration', () => {
  it('is the parent\'s with the clone\'s name, uuid, memory and MACs; the parent\'s record is untouched', () => {
    const parent = parentConfig();
    const c = cloneDomainConfig(parent, identity);
    expect(c.c_info).toEqual({ type: 'pvh', name: 'web-c1', uuid: identity.uuid });
    expect(c.b_info).toMatchObject({ max_memkb: 131072, target_memkb: 122880, kernel: '/boot/vmlinux', max_vcpus: 2 });
    expect(c.nics).toEqual([{ devid: 0, mac: '00:16:3e:12:34:56', bridge: 'xenbr0', script: 'vif-bridge' }]);
    expect(c.on_crash).toBe('destroy');
    expect(parent).toEqual(parentConfig());
  });

  it('leaves out devices a clone does not get (libxl would drop them itself with a warning)', () => {
    expect(cloneDomainConfig(parentConfig(), identity).disks).toBeUndefined();
    expect(cloneDomainConfig(parentConfig(), { ...identity, nics: [] }).nics).toEqual([]);
  });

  it('is a minimal one of the right type when libxl did not build the parent', () => {
    const c = cloneDomainConfig(null, { ...identity, nics: [] });
    expect(c.c_info).toEqual({ type: 'pvh', name: 'web-c1', uuid: identity.uuid });
    expect(c.b_info).toEqual({ max_vcpus: 2, avail_vcpus: [0, 1], type: { pvh: {} }, max_memkb: 131072, target_memkb: 122880 });
  });

  it('runs the parent\'s hotplug script when it is a plain name or path, vif-bridge otherwise', () => {
    expect(nicScript(parentConfig(), 0)).toBe('vif-bridge');
    expect(nicScript({ ...parentConfig(), nics: [{ devid: 0, script: '/etc/xen/scripts/vif-custom' }] }, 0)).toBe('/etc/xen/scripts/vif-custom');
    expect(nicScript({ ...parentConfig(), nics: [{ devid: 0, script: '../../bin/sh -c x' }] }, 0)).toBe('vif-bridge');
    expect(nicScript(null, 3)).toBe('vif-bridge');
  });
});

describe('libxl userdata files', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sf-libxl-'));
    process.env.SNOWFLOCK_LIBXL_DIR = dir;
  });
  afterEach(() => {
    delete process.env.SNOWFLOCK_LIBXL_DIR;
    rmSync(dir, { recursive: true, force: true });
  });

  it('are written as libxl writes them (NUL-terminated, private) and read back', () => {
    writeDomainConfig(7, identity.uuid, cloneDomainConfig(parentConfig(), identity));
    const path = userdataPath(7, identity.uuid);
    expect(path).toBe(join(dir, `userdata-d.7.${identity.uuid}.libxl-json`));
    expect(readFileSync(path).at(-1)).toBe(0);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readDomainConfig(7, identity.uuid)?.c_info.name).toBe('web-c1');
    removeDomainConfig(7, identity.uuid);
    expect(readDomainConfig(7, identity.uuid)).toBeNull();
  });

  it('that are not a domain configuration are refused with the file named', () => {
    writeFileSync(userdataPath(8, identity.uuid), '{"c_info": 1}\0');
    expect(() => readDomainConfig(8, identity.uuid)).toThrow(LibxlConfigError);
    writeFileSync(userdataPath(9, identity.uuid), '{not json');
    expect(() => readDomainConfig(9, identity.uuid)).toThrow(/userdata-d\.9\..*not valid JSON/);
  });
});

describe('memory limits', () => {
  it('a clone takes the parent\'s static-max and target; older descriptors fall back to Xen\'s limit less libxl\'s slack', () => {
    const d = sampleDescriptor();
    d.meta.memory = { ...d.meta.memory, staticMaxKiB: 131072, targetKiB: 122880 };
    expect(cloneMemoryKiB(d)).toEqual({ staticMaxKiB: 131072, targetKiB: 122880 });
    const old = sampleDescriptor();
    expect(cloneMemoryKiB(old)).toEqual({ staticMaxKiB: old.meta.vm.maxPages * 4 - 1024, targetKiB: old.meta.vm.maxPages * 4 - 1024 });
  });

  it('a descriptor whose target exceeds its static-max, or static-max Xen\'s limit, is refused', () => {
    const d = sampleDescriptor();
    d.meta.memory = { ...d.meta.memory, staticMaxKiB: d.meta.vm.maxPages * 4, targetKiB: d.meta.vm.maxPages * 4 + 4 };
    expect(() => decodeDescriptor(encodeDescriptor(d))).toThrow(/bad memory target/);
    d.meta.memory = { ...d.meta.memory, staticMaxKiB: d.meta.vm.maxPages * 4 + 4, targetKiB: 4 };
    expect(() => decodeDescriptor(encodeDescriptor(d))).toThrow(/bad memory static-max/);
  });

  it('a descriptor with a control feature other than 0/1 is refused', () => {
    const d = sampleDescriptor();
    d.meta.control = { 'feature-poweroff': 'yes' };
    expect(() => decodeDescriptor(encodeDescriptor(d))).toThrow(/bad control feature/);
  });
});

describe('the parent\'s record', () => {
  it('reads memory limits as numbers within Xen\'s limit and only 0/1 control features', () => {
    const xs = memoryStore();
    xs.write('/local/domain/5/memory/static-max', '131072');
    xs.write('/local/domain/5/memory/target', '122880');
    xs.write('/local/domain/5/control/feature-poweroff', '1');
    xs.write('/local/domain/5/control/feature-reboot', 'rm -rf /');
    const r = readParentRecord(xs, 5, identity.uuid, 131072 / 4 + 256);
    expect(r.memory).toEqual({ staticMaxKiB: 131072, targetKiB: 122880 });
    expect(r.control).toEqual({ 'feature-poweroff': '1' });
    xs.write('/local/domain/5/memory/target', '999999999');
    expect(readParentRecord(xs, 5, identity.uuid, 131072 / 4 + 256).memory).toEqual({ staticMaxKiB: undefined, targetKiB: undefined });
  });

  it('is laid out in the clone\'s home: memory limits, control nodes the guest may write, features carried over', () => {
    const xs = memoryStore();
    writeDomainEntries(xs, {
      domid: 9, name: 'c', uuid: identity.uuid, type: 'pvh', staticMaxKiB: 131072, targetKiB: 122880, vcpus: 1,
      storeGfn: 1, storePort: 2, consoleGfn: 3, consolePort: 4, snowflock: { vmid: '1' }, control: { 'feature-poweroff': '1' },
    });
    expect(xs.read('/local/domain/9/memory/static-max')).toBe('131072');
    expect(xs.read('/local/domain/9/memory/target')).toBe('122880');
    expect(xs.read('/local/domain/9/control/feature-poweroff')).toBe('1');
    for (const node of ['control/shutdown', 'control/sysrq', 'device/suspend/event-channel']) {
      expect(xs.perms.get(`/local/domain/9/${node}`), node).toEqual([{ domid: 9 }]);
    }
    expect(xs.perms.get('/local/domain/9/memory/target')).toEqual([{ domid: 0 }, { domid: 9, read: true }]);
  });
});
