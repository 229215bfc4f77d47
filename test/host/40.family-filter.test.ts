// Family isolation on a real Linux bridge: four "guests" (network namespaces with a veth each,
// bridge-side ends named like Xen vifs) on one bridge; the nftables filter of a family made of
// the parent and two clones lets the family talk among itself and the parent to everyone, and
// keeps the clones and the outsider apart, also when a clone changes its MAC or lies in its ARP
// sender fields (it is known by its port, not by what it sends); removing it restores the bridge.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { applyFamilyFilter, hasFamilyFilter, removeFamilyFilter, type FamilyMembers } from '../../lib/net/family-filter.js';

const isRoot = process.getuid?.() === 0;
const hasNft = spawnSync('nft', ['--version']).status === 0;
const tag = `sfiso${process.pid % 100000}`;
const bridgeNs = `${tag}-br`;
const guests = [
  { name: 'parent', vif: 'vif1.0', mac: '00:16:3e:00:01:01', ip: '10.77.0.1' },
  { name: 'clone1', vif: 'vif2.0', mac: '00:16:3e:00:01:02', ip: '10.77.0.2' },
  { name: 'clone2', vif: 'vif3.0', mac: '00:16:3e:00:01:03', ip: '10.77.0.3' },
  { name: 'outsider', vif: 'vif4.0', mac: '00:16:3e:00:01:04', ip: '10.77.0.4' },
] as const;
type Guest = (typeof guests)[number]['name'];
const g = (n: Guest) => guests.find((x) => x.name === n)!;
const ns = (n: Guest) => `${tag}-${n}`;
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

/** One ICMP echo, 1 s to answer; the ARP tables are flushed first so each try starts cold. */
function reaches(from: Guest, to: Guest): boolean {
  ip('-n', ns(from), 'neigh', 'flush', 'dev', 'eth0');
  return spawnSync('ip', ['netns', 'exec', ns(from), 'busybox', 'ping', '-c', '1', '-W', '1', g(to).ip]).status === 0;
}

/** Whether an ARP request from `from` arrived at `to` (its kernel noted `from`'s address from it). */
function heard(to: Guest, from: Guest, o: { mac?: string } = {}): boolean {
  ip('-n', ns(to), 'neigh', 'flush', 'dev', 'eth0');
  reaches(from, to);
  const entry = ip('-n', ns(to), 'neigh', 'show', g(from).ip, 'dev', 'eth0').toString();
  return o.mac ? entry.includes(o.mac) : entry.trim() !== '';
}

function setMac(n: Guest, mac: string): void {
  ip('-n', ns(n), 'link', 'set', 'eth0', 'address', mac);
}

/** The bridge port behind which the bridge has learned `mac`, if any. */
function learnedPort(mac: string): string | undefined {
  const fdb = execFileSync('bridge', ['-n', bridgeNs, 'fdb', 'show', 'br', 'br0'], { stdio: 'pipe' }).toString();
  return fdb.split('\n').find((l) => l.startsWith(`${mac} dev `))?.split(' ')[2];
}

const macBytes = (mac: string) => mac.split(':').join('');
const ipBytes = (a: string) => a.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).join('');

/**
 * An ARP request from `from`'s own MAC asking for `to`'s address, whose sender hardware field
 * says `senderMac`; sent raw (python3's AF_PACKET: node has no raw sockets). `to`'s kernel notes
 * the sender fields when the frame arrives.
 */
function sendArp(from: Guest, to: Guest, senderMac: string): void {
  const frame = macBytes(g(to).mac) + macBytes(g(from).mac) + '0806' + '0001080006040001'
    + macBytes(senderMac) + ipBytes(g(from).ip) + '000000000000' + ipBytes(g(to).ip);
  execFileSync('ip', ['netns', 'exec', ns(from), 'python3', '-c',
    'import socket,sys; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0)); s.send(bytes.fromhex(sys.argv[1]))', frame], { stdio: 'pipe' });
}

/** Whether `to` took `senderMac` as `from`'s address from a lying ARP request. */
function arpLieArrives(from: Guest, to: Guest, senderMac: string): boolean {
  ip('-n', ns(to), 'neigh', 'flush', 'dev', 'eth0');
  sendArp(from, to, senderMac);
  execFileSync('sleep', ['0.2']);
  return ip('-n', ns(to), 'neigh', 'show', g(from).ip, 'dev', 'eth0').toString().includes(senderMac);
}

const stranger = '00:16:3e:00:01:99';
const inBridge = { netns: bridgeNs };

const family: FamilyMembers = {
  family: `t${process.pid}`,
  parentMacs: [g('parent').mac],
  cloneMacs: [g('clone1').mac, g('clone2').mac],
  cloneVifs: [{ name: g('clone1').vif, mac: g('clone1').mac }, { name: g('clone2').vif, mac: g('clone2').mac }],
  parentVifs: [g('parent').vif],
};

describe.skipIf(!isRoot || !hasNft)('a fork family isolated on a real bridge (nftables)', () => {
  beforeAll(() => {
    ip('netns', 'add', bridgeNs);
    ip('-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', bridgeNs, 'link', 'set', 'br0', 'up');
    for (const x of guests) {
      ip('netns', 'add', ns(x.name));
      ip('-n', bridgeNs, 'link', 'add', x.vif, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(x.name));
      ip('-n', bridgeNs, 'link', 'set', x.vif, 'master', 'br0', 'up');
      ip('-n', ns(x.name), 'link', 'set', 'eth0', 'address', x.mac, 'up');
      ip('-n', ns(x.name), 'addr', 'add', `${x.ip}/24`, 'dev', 'eth0');
    }
  });
  afterAll(() => {
    for (const n of [bridgeNs, ...guests.map((x) => ns(x.name))]) spawnSync('ip', ['netns', 'del', n]);
  });

  it('everyone reaches everyone before the filter', () => {
    expect(reaches('clone1', 'outsider')).toBe(true);
    expect(reaches('outsider', 'clone2')).toBe(true);
    expect(heard('outsider', 'clone1')).toBe(true);
    expect(arpLieArrives('clone1', 'parent', stranger)).toBe(true);
  });

  it('with the filter: the family talks, the parent talks to everyone, clones and outsiders do not', async () => {
    await applyFamilyFilter(family, inBridge);
    expect(await hasFamilyFilter(family.family, inBridge)).toBe(true);
    expect(reaches('clone1', 'parent')).toBe(true);
    expect(reaches('parent', 'clone2')).toBe(true);
    expect(reaches('clone1', 'clone2')).toBe(true);
    expect(reaches('parent', 'outsider')).toBe(true);
    expect(reaches('clone1', 'outsider')).toBe(false);
    expect(reaches('outsider', 'clone2')).toBe(false);
  });

  it('a clone that changes its MAC reaches no outsider, and the bridge does not learn the MAC it claims', async () => {
    await applyFamilyFilter(family, inBridge);
    expect(learnedPort(g('parent').mac)).toBe(g('parent').vif);
    for (const mac of [stranger, g('parent').mac, g('outsider').mac]) {
      setMac('clone1', mac);
      try {
        expect(heard('outsider', 'clone1'), `clone1 as ${mac}`).toBe(false);
        expect(learnedPort(mac), `clone1 as ${mac}`).not.toBe(g('clone1').vif);
      } finally {
        setMac('clone1', g('clone1').mac);
      }
    }
    expect(learnedPort(g('parent').mac)).toBe(g('parent').vif);
    expect(reaches('clone1', 'parent')).toBe(true);
  });

  it('a clone\'s ARP whose sender hardware address is not its own does not arrive', async () => {
    await applyFamilyFilter(family, inBridge);
    expect(arpLieArrives('clone1', 'parent', stranger)).toBe(false);
    expect(arpLieArrives('clone1', 'parent', g('clone1').mac)).toBe(true);
  });

  it('installing it again replaces it; removing it restores the bridge and is idempotent', async () => {
    await applyFamilyFilter(family, inBridge);
    expect(reaches('clone2', 'outsider')).toBe(false);
    await removeFamilyFilter(family.family, inBridge);
    await removeFamilyFilter(family.family, inBridge);
    expect(await hasFamilyFilter(family.family, inBridge)).toBe(false);
    expect(reaches('clone1', 'outsider')).toBe(true);
  });
});
