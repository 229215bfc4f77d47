import { describe, expect, it } from 'vitest';
import { CloneNicError, newMac, readNics, removeCloneNics, writeCloneNics } from '../../../lib/xen/clone-nic.js';
import { childAddress, readdressChild, type LinkSnapshot } from '../../../lib/api/clone-network.js';
import { memoryStore } from '../../memory-xenstore.js';
import type { XenStore } from '../../../lib/xen/native.js';

/** A vif as libxl lays it out: the guest's frontend and dom0's backend, each naming the other. */
function libxlVif(xs: XenStore, domid: number, devid: number, mac: string, bridge?: string, backendDomain = 0): void {
  const front = `/local/domain/${domid}/device/vif/${devid}`;
  const back = `/local/domain/${backendDomain}/backend/vif/${domid}/${devid}`;
  xs.write(`${front}/backend`, back);
  xs.write(`${front}/mac`, mac);
  xs.write(`${back}/frontend`, front);
  xs.write(`${back}/frontend-id`, String(domid));
  xs.write(`${back}/mac`, mac);
  if (bridge) xs.write(`${back}/bridge`, bridge);
}

describe('a clone\'s vifs in xenstore', () => {
  it('reads the parent\'s bridged vifs and says why others are skipped', () => {
    const xs = memoryStore();
    libxlVif(xs, 5, 0, '00:16:3e:00:00:05', 'xenbr0');
    libxlVif(xs, 5, 1, '00:16:3e:00:00:06');
    libxlVif(xs, 5, 2, '00:16:3e:00:00:07', 'xenbr0', 3);
    expect(readNics(xs, 5)).toEqual({
      nics: [{ devid: 0, mac: '00:16:3e:00:00:05', bridge: 'xenbr0' }],
      skipped: ['vif 1: not on a bridge', 'vif 2: not served by dom0'],
    });
  });

  it('reads a clone\'s own vifs as writeCloneNics laid them out (a clone cloned again)', () => {
    const xs = memoryStore();
    writeCloneNics(xs, 9, [{ devid: 0, mac: '00:16:3e:00:00:05', bridge: 'xenbr0' }], { macs: ['00:16:3e:12:34:56'], bridgeExists: () => true });
    expect(readNics(xs, 9)).toEqual({ nics: [{ devid: 0, mac: '00:16:3e:12:34:56', bridge: 'xenbr0' }], skipped: [] });
  });

  // The frontend directory is the guest's to write: none of it may choose the bridge or the MAC.
  it('refuses a guest-written backend that points at another domain\'s vif', () => {
    const xs = memoryStore();
    libxlVif(xs, 5, 0, '00:16:3e:00:00:05', 'xenbr0');
    libxlVif(xs, 9, 0, '00:16:3e:00:00:09', 'xenbr-other');
    xs.write('/local/domain/5/device/vif/0/backend', '/local/domain/0/backend/vif/9/0');
    xs.write('/local/domain/5/device/vif/0/mac', '00:16:3e:00:00:09');
    expect(readNics(xs, 5)).toEqual({
      nics: [],
      skipped: ['vif 0: its frontend names backend /local/domain/0/backend/vif/9/0, not dom0\'s /local/domain/0/backend/vif/5/0'],
    });
  });

  it('refuses a backend that dom0 keeps for another frontend', () => {
    const xs = memoryStore();
    libxlVif(xs, 5, 0, '00:16:3e:00:00:05', 'xenbr0');
    xs.write('/local/domain/0/backend/vif/5/0/frontend-id', '9');
    libxlVif(xs, 5, 1, '00:16:3e:00:00:06', 'xenbr0');
    xs.write('/local/domain/0/backend/vif/5/1/frontend', '/local/domain/9/device/vif/0');
    expect(readNics(xs, 5)).toEqual({
      nics: [],
      skipped: ['vif 0: dom0\'s backend serves domain 9, not 5', 'vif 1: dom0\'s backend serves /local/domain/9/device/vif/0, not /local/domain/5/device/vif/1'],
    });
  });

  it('takes the MAC from dom0\'s backend, not from the guest\'s frontend', () => {
    const xs = memoryStore();
    libxlVif(xs, 5, 0, '00:16:3e:00:00:05', 'xenbr0');
    xs.write('/local/domain/5/device/vif/0/mac', '00:16:3e:00:00:09');
    expect(readNics(xs, 5).nics).toEqual([{ devid: 0, mac: '00:16:3e:00:00:05', bridge: 'xenbr0' }]);
  });

  it('skips vif names that are not device numbers', () => {
    const xs = memoryStore();
    xs.write('/local/domain/5/device/vif/x/backend', '/local/domain/0/backend/vif/5/x');
    expect(readNics(xs, 5)).toEqual({ nics: [], skipped: ['vif x: not a device number'] });
  });

  it('writes frontend and backend with the new MAC, the backend state last, owned as libxl owns them', () => {
    const xs = memoryStore();
    const order: string[] = [];
    const write = xs.write;
    xs.write = (p, v) => { order.push(p); write(p, v); };
    const macs = writeCloneNics(xs, 9, [{ devid: 0, mac: '00:16:3e:00:00:05', bridge: 'xenbr0' }], { macs: ['00:16:3e:12:34:56'], bridgeExists: () => true });
    expect(macs).toEqual(['00:16:3e:12:34:56']);
    expect(xs.read('/local/domain/9/device/vif/0/mac')).toBe('00:16:3e:12:34:56');
    expect(xs.read('/local/domain/9/device/vif/0/backend')).toBe('/local/domain/0/backend/vif/9/0');
    expect(xs.read('/local/domain/0/backend/vif/9/0/frontend')).toBe('/local/domain/9/device/vif/0');
    expect(xs.read('/local/domain/0/backend/vif/9/0/bridge')).toBe('xenbr0');
    expect(order.at(-1)).toBe('/local/domain/0/backend/vif/9/0/state');
    expect(order.indexOf('/local/domain/9/device/vif/0/state')).toBeLessThan(order.indexOf('/local/domain/0/backend/vif/9/0/frontend'));
    expect(xs.perms.get('/local/domain/0/backend/vif/9/0')).toEqual([{ domid: 0 }, { domid: 9, read: true }]);
    expect(xs.perms.get('/local/domain/9/device/vif/0')).toEqual([{ domid: 9 }, { domid: 0, read: true }]);
    removeCloneNics(xs, 9);
    expect(xs.directory('/local/domain/0/backend/vif/9')).toBeNull();
  });

  it('refuses a bridge this host lacks before writing anything', () => {
    const xs = memoryStore();
    expect(() => writeCloneNics(xs, 9, [{ devid: 0, mac: 'm', bridge: 'br-elsewhere' }], { bridgeExists: () => false }))
      .toThrow(new CloneNicError('the parent\'s vif 0 is on bridge br-elsewhere, which this host does not have (create it, or clone to a host that has it)'));
    expect(xs.nodes.size).toBe(0);
  });

  it('makes MACs in Xen\'s OUI with the top bit of the tail clear', () => {
    for (let i = 0; i < 50; i++) expect(newMac()).toMatch(/^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
  });
});

describe('a child\'s address', () => {
  it('is the parent\'s plus the vmid, within the subnet', () => {
    expect(childAddress('10.98.0.10', 24, 1)).toBe('10.98.0.11');
    expect(childAddress('10.98.0.250', 24, 4)).toBe('10.98.0.254');
    expect(childAddress('192.168.1.255', 16, 1)).toBe('192.168.2.0');
  });
  it('refuses the broadcast address and beyond, and /31, /32', () => {
    expect(() => childAddress('10.98.0.250', 24, 5)).toThrow(/no room for clone 5/);
    expect(() => childAddress('10.0.0.1', 31, 1)).toThrow(RangeError);
  });

  const link: LinkSnapshot = { name: 'eth0', mac: '00:16:3e:00:00:05', ipv4: [{ address: '10.98.0.10', prefix: 24 }] };

  it('moves the address of a link whose MAC changed, pins the parent\'s address to the parent\'s MAC and puts back the routes', async () => {
    const calls: string[] = [];
    let routes = 'default via 10.98.0.1\n10.98.0.0/24 proto kernel scope link src 10.98.0.10\n';
    const runIp = async (args: string[]) => {
      calls.push(args.join(' '));
      if (args[0] === 'addr' && args[1] === 'del') routes = '';
      if (args[0] === '-4') return routes;
      return '';
    };
    const changed = await readdressChild([link], 2, { runIp, readLinkMac: () => '00:16:3e:aa:bb:cc', waitMs: 0 });
    expect(changed).toEqual(['eth0 10.98.0.10/24 -> 10.98.0.12/24']);
    expect(calls).toEqual([
      '-4 route show dev eth0',
      'addr del 10.98.0.10/24 dev eth0',
      'addr add 10.98.0.12/24 dev eth0',
      'link set dev eth0 down',
      'link set dev eth0 up',
      'neigh replace 10.98.0.10 lladdr 00:16:3e:00:00:05 dev eth0 nud permanent',
      '-4 route show dev eth0',
      'route add default via 10.98.0.1 dev eth0',
    ]);
  });

  it('pins the parent\'s address with arp -s where ip has no neigh replace (busybox)', async () => {
    const arp: string[] = [];
    const runIp = async (args: string[]) => {
      if (args[0] === 'neigh') throw new Error("ip: invalid argument 'replace' to 'ip'");
      return '';
    };
    await readdressChild([link], 3, { runIp, runArp: async (a) => { arp.push(a.join(' ')); return ''; }, readLinkMac: () => '00:16:3e:aa:bb:cc', waitMs: 0 });
    expect(arp).toEqual(['-i eth0 -s 10.98.0.10 00:16:3e:00:00:05']);
  });

  it('leaves a link alone whose MAC never changed (not re-plugged by dom0)', async () => {
    const calls: string[] = [];
    const changed = await readdressChild([link], 1, { runIp: async (a) => { calls.push(a.join(' ')); return ''; }, readLinkMac: () => link.mac, waitMs: 0 });
    expect(changed).toEqual([]);
    expect(calls).toEqual([]);
  });
});

describe('family MACs', () => {
  it('are the same on every host for a fork, vmid and vif, and differ between them', async () => {
    const { familyMac } = await import('../../../lib/xen/clone-nic.js');
    expect(familyMac('f-1', 1, 0)).toBe(familyMac('f-1', 1, 0));
    const all = new Set([familyMac('f-1', 1, 0), familyMac('f-1', 2, 0), familyMac('f-1', 1, 1), familyMac('f-2', 1, 0)]);
    expect(all.size).toBe(4);
    for (const m of all) expect(m).toMatch(/^00:16:3e:[0-7][0-9a-f](:[0-9a-f]{2}){2}$/);
  });
  it('are what the Xen backend gives each clone vif', async () => {
    const { FamilyNetwork } = await import('../../../lib/daemon/family-network.js');
    const { familyMac } = await import('../../../lib/xen/clone-nic.js');
    const net = new FamilyNetwork(false);
    const nics = [{ devid: 0, mac: '00:16:3e:00:00:01', bridge: 'xenbr0' }, { devid: 1, mac: '00:16:3e:00:00:02', bridge: 'xenbr1' }];
    expect(net.macsFor('f-9', 3, nics)).toEqual([familyMac('f-9', 3, 0), familyMac('f-9', 3, 1)]);
    await net.built({ fork: 'f-9', family: 'h:1', clones: 2 }, nics, [{ domid: 7, vmid: 1 }]); // isolation off: nothing to install
    await net.ended('f-9');
  });
});
