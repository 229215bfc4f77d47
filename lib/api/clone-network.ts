// A clone's network identity, the guest's half. Dom0 gives every clone's vif a new MAC, which
// netfront reads when the clone's resume reconnects it; the IPv4 addresses are still the
// parent's, so a child moves each address of an interface whose MAC changed to the parent's
// address plus its vmid (SnowFlock's vmid-derived addresses): a family of m clones uses the m
// addresses after the parent's, which the operator keeps free.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';

export interface LinkSnapshot {
  name: string;
  mac: string;
  ipv4: { address: string; prefix: number }[];
}

export type RunIp = (args: string[]) => Promise<string>;

const execIp: RunIp = async (args) => (await promisify(execFile)('ip', args)).stdout;
const execArp: RunIp = async (args) => (await promisify(execFile)('arp', args)).stdout;

/** A permanent ARP entry: iproute2's `ip neigh`, else net-tools' or busybox's `arp -s` (busybox `ip` has no `neigh replace`). */
async function pinNeighbour(address: string, mac: string, dev: string, ip: RunIp, arp: RunIp): Promise<void> {
  try {
    await ip(['neigh', 'replace', address, 'lladdr', mac, 'dev', dev, 'nud', 'permanent']);
  } catch {
    await arp(['-i', dev, '-s', address, mac]);
  }
}

export function readMac(name: string): string | null {
  try {
    return readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();
  } catch {
    return null;
  }
}

/** The interfaces with IPv4 addresses, loopback aside, as they are before the fork. */
export function snapshotLinks(readLinkMac = readMac): LinkSnapshot[] {
  const links: LinkSnapshot[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const ipv4 = (addrs ?? []).filter((a) => a.family === 'IPv4' && !a.internal)
      .map((a) => ({ address: a.address, prefix: Number(a.cidr?.split('/')[1] ?? 32) }));
    const mac = readLinkMac(name);
    if (ipv4.length && mac) links.push({ name, mac, ipv4 });
  }
  return links;
}

const toInt = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const toDotted = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/** The parent's address plus vmid, which must stay a host address of the same subnet. */
export function childAddress(parent: string, prefix: number, vmid: number): string {
  const size = 2 ** (32 - prefix);
  const base = toInt(parent) - (toInt(parent) % size);
  const next = toInt(parent) + vmid;
  if (prefix > 30 || next >= base + size - 1) {
    throw new RangeError(`${parent}/${prefix} has no room for clone ${vmid}: a family of m clones needs the m addresses after the parent's in its subnet`);
  }
  return toDotted(next);
}

/**
 * In a child: once the interfaces' MACs changed (netfront may take a moment after resume),
 * moves their addresses to the vmid-derived ones, renews the IPv6 link-local address, pins the
 * parent's addresses to the parent's MAC and restores the routes that left with the old
 * address. Needs `ip` (iproute2 or busybox) and, with busybox, `arp`.
 * Returns what changed, e.g. "eth0 10.0.0.5/24 -> 10.0.0.7/24".
 */
export async function readdressChild(before: LinkSnapshot[], vmid: number, o: { runIp?: RunIp; runArp?: RunIp; readLinkMac?: typeof readMac; waitMs?: number } = {}): Promise<string[]> {
  const ip = o.runIp ?? execIp;
  const mac = o.readLinkMac ?? readMac;
  const deadline = Date.now() + (o.waitMs ?? 5000);
  const changed: string[] = [];
  for (const link of before) {
    while (mac(link.name) === link.mac && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (mac(link.name) === link.mac) continue; // dom0 gave this vif no new MAC: not a clone's link
    const routes = (await ip(['-4', 'route', 'show', 'dev', link.name])).split('\n').map((l) => l.trim())
      .filter((l) => l && !/proto kernel/.test(l));
    for (const { address, prefix } of link.ipv4) {
      const next = childAddress(address, prefix, vmid);
      // Delete first: deleting a primary address also deletes its secondaries by default.
      await ip(['addr', 'del', `${address}/${prefix}`, 'dev', link.name]);
      await ip(['addr', 'add', `${next}/${prefix}`, 'dev', link.name]);
      changed.push(`${link.name} ${address}/${prefix} -> ${next}/${prefix}`);
    }
    // The IPv6 link-local address came from the parent's MAC (every sibling would claim it):
    // a down/up makes the kernel derive it from the new one. IPv4 addresses stay.
    await ip(['link', 'set', 'dev', link.name, 'down']);
    await ip(['link', 'set', 'dev', link.name, 'up']);
    // Siblings resume holding the parent's address too. The host daemon keeps them off the
    // bridge until they readdress, but one that opted out (readdress: false) joins holding it:
    // the parent's address is pinned to the parent's MAC (this link's MAC before the fork), which
    // no ARP can override. After the up: a down flushes the link's neighbours, permanent ones too.
    for (const { address } of link.ipv4) await pinNeighbour(address, link.mac, link.name, ip, o.runArp ?? execArp);
    const left = (await ip(['-4', 'route', 'show', 'dev', link.name])).split('\n').map((l) => l.trim());
    for (const r of routes) if (!left.includes(r)) await ip(['route', 'add', ...r.replace(/ src \S+/, '').split(/\s+/), 'dev', link.name]).catch(() => '');
  }
  return changed;
}
