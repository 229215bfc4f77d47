// Family isolation on a real Linux bridge: four "guests" (network namespaces with a veth each,
// bridge-side ends named like Xen vifs) on one bridge; the nftables filter of a family made of
// the parent and two clones lets the family talk among itself and the parent to everyone, and
// keeps the clones and the outsider apart; removing it restores the bridge.
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

const inBridge = { netns: bridgeNs };

const family: FamilyMembers = {
  family: `t${process.pid}`,
  parentMacs: [g('parent').mac],
  cloneMacs: [g('clone1').mac, g('clone2').mac],
  cloneVifs: [g('clone1').vif, g('clone2').vif],
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

  it('installing it again replaces it; removing it restores the bridge and is idempotent', async () => {
    await applyFamilyFilter(family, inBridge);
    expect(reaches('clone2', 'outsider')).toBe(false);
    await removeFamilyFilter(family.family, inBridge);
    await removeFamilyFilter(family.family, inBridge);
    expect(await hasFamilyFilter(family.family, inBridge)).toBe(false);
    expect(reaches('clone1', 'outsider')).toBe(true);
  });
});
