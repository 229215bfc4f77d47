// Network isolation of a fork family in dom0 (SnowFlock kept each family on a private virtual
// network; today's equivalent is an nftables bridge table per family). Clones share the
// parent's bridge, and on every host with clones of the family:
//   - a clone is known by its port (its vif), never by the MAC it sends: a frame from a clone's
//     vif whose source MAC, or ARP sender hardware address, is not that vif's is dropped before
//     the bridge learns from it (a clone sets its own MAC, and could otherwise leave its family
//     or move another guest's MAC behind its port);
//   - a clone's unicast frames reach only family members (the parent and its clones, by MAC);
//   - a clone's broadcast and multicast reach only the family's vifs on this host and the
//     bridge's non-vif ports (the uplink to the family's other hosts);
//   - nothing from another guest's vif reaches a clone's vif, and from the uplink only frames
//     from family MACs (the family's other hosts).
// The parent keeps its own connectivity. One table per family makes removal one command.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface FamilyMembers {
  /** the fork id; the table is sf-<first 12 characters> */
  family: string;
  /** MACs of the parent's vifs */
  parentMacs: string[];
  /** MACs of every clone's vifs, on all hosts */
  cloneMacs: string[];
  /** this host's vifs of the family's clones: netdev name and the MAC dom0 gave it */
  cloneVifs: CloneVif[];
  /** this host's vifs of the parent, if it runs here */
  parentVifs: string[];
}

export interface CloneVif {
  name: string;
  mac: string;
}

export class FamilyFilterError extends Error {}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME = /^[\w.-]{1,15}$/;

export function tableName(family: string): string {
  if (!/^[\w-]{1,64}$/.test(family)) throw new FamilyFilterError(`bad family id "${family}"`);
  return `sf-${family.slice(0, 12)}`;
}

const elements = (values: string[], quote = false) => (values.length ? ` elements = { ${values.map((v) => (quote ? `"${v}"` : v)).join(', ')} };` : '');

/** The nft script that installs (or replaces) the family's table. */
export function familyRuleset(m: FamilyMembers): string {
  const cloneVifs = m.cloneVifs.map((v) => v.name);
  for (const mac of [...m.parentMacs, ...m.cloneMacs, ...m.cloneVifs.map((v) => v.mac)]) if (!MAC.test(mac)) throw new FamilyFilterError(`bad MAC "${mac}"`);
  for (const dev of [...cloneVifs, ...m.parentVifs]) if (!IFNAME.test(dev)) throw new FamilyFilterError(`bad interface name "${dev}"`);
  if (!m.cloneMacs.length) throw new FamilyFilterError('a family filter needs the clones\' MACs');
  const t = tableName(m.family);
  return [
    `table bridge ${t} { }`,
    `delete table bridge ${t}`, // replace whatever an earlier build of this family left
    `table bridge ${t} {`,
    `  set members { type ether_addr;${elements([...m.parentMacs, ...m.cloneMacs])} }`,
    `  set clone_ports { type ifname;${elements(cloneVifs, true)} }`,
    `  set family_ports { type ifname;${elements([...m.parentVifs, ...cloneVifs], true)} }`,
    `  set clone_port_macs { type ifname . ether_addr;${elements(m.cloneVifs.map((v) => `"${v.name}" . ${v.mac}`))} }`,
    '  chain prerouting {',
    // Before the bridge learns the source: what a clone sends carries its own vif's MAC.
    '    type filter hook prerouting priority -10; policy accept;',
    '    iifname @clone_ports iifname . ether saddr != @clone_port_macs drop',
    '    iifname @clone_ports ether type arp iifname . arp saddr ether != @clone_port_macs drop',
    '  }',
    '  chain forward {',
    '    type filter hook forward priority -10; policy accept;',
    '    iifname @clone_ports ether daddr != @members ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00 drop',
    '    iifname @clone_ports oifname != @family_ports oifname "vif*" drop',
    '    oifname @clone_ports iifname != @family_ports iifname "vif*" drop',
    '    oifname @clone_ports ether saddr != @members drop',
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Where nft runs: this network namespace, or a named one (`ip netns exec`). */
export interface FilterPlace {
  netns?: string;
}

const nftArgv = (args: string[], at: FilterPlace): [string, string[]] => (at.netns ? ['ip', ['netns', 'exec', at.netns, 'nft', ...args]] : ['nft', args]);

async function nft(script: string, at: FilterPlace): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const [cmd, args] = nftArgv(['-f', '-'], at);
    const child = execFile(cmd, args, (err, _out, stderr) => {
      if (err) {
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
        reject(new FamilyFilterError(missing ? 'nft is not installed (apt-get install nftables): families cannot be isolated' : `nft refused the family filter: ${stderr.trim() || err.message}`));
      } else resolve();
    });
    child.stdin?.end(script);
  });
}

/** Installs or replaces the family's filter on this host. */
export function applyFamilyFilter(m: FamilyMembers, at: FilterPlace = {}): Promise<void> {
  return nft(familyRuleset(m), at);
}

/** Removes the family's filter; a no-op when it is not there. */
export async function removeFamilyFilter(family: string, at: FilterPlace = {}): Promise<void> {
  const t = tableName(family);
  await nft(`table bridge ${t} { }\ndelete table bridge ${t}\n`, at);
}

/** Whether this host has the family's filter (for tests and `doctor`). */
export async function hasFamilyFilter(family: string, at: FilterPlace = {}): Promise<boolean> {
  const { stdout } = await exec(...nftArgv(['list', 'tables', 'bridge'], at));
  return stdout.split('\n').some((l) => l.trim() === `table bridge ${tableName(family)}`);
}
