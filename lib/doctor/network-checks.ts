// Doctor checks for the network side of forks: how clones will receive pages (IP multicast for
// mcdist, or its TCP fallback) and whether families can be isolated (nftables bridge tables).
import { spawnSync } from 'node:child_process';
import { probeMulticast } from '../mcdist/probe.js';
import { check, type Check } from './check.js';

export async function networkChecks(): Promise<Check[]> {
  const r = await probeMulticast();
  return [
    r.available
      ? check('network.multicast', 'network', 'mcdist multicast', 'ok', 'this host delivers IP multicast; mcdist will multicast pages (falls back to TCP at run time if the network drops it)')
      : check('network.multicast', 'network', 'mcdist multicast', 'warn', `unavailable (${r.reason ?? 'no delivery'}): mcdist will use unicast TCP`),
    familyFilterCheck(),
  ];
}

/** Creates and deletes a bridge table with nft in a throwaway namespace (this host's rules stay untouched). */
export function familyFilterCheck(): Check {
  const title = 'family isolation (nftables)';
  if (spawnSync('nft', ['--version']).status !== 0) {
    return check('network.family-filter', 'network', title, 'warn', 'nft not installed: host daemons cannot --isolate-families (apt-get install nftables)');
  }
  if (process.getuid?.() !== 0) return check('network.family-filter', 'network', title, 'skip', 'needs root to probe');
  const ns = `sfdoctornft${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', ns]).status !== 0) return check('network.family-filter', 'network', title, 'skip', 'cannot make a namespace to probe in');
  try {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', 'add', 'table', 'bridge', 'sfdoctor'], { encoding: 'utf8', timeout: 10_000 });
    return r.status === 0
      ? check('network.family-filter', 'network', title, 'ok', 'nft makes bridge tables: host daemons can --isolate-families')
      : check('network.family-filter', 'network', title, 'warn', `nft cannot make a bridge table (${(r.stderr ?? '').trim() || 'failed'}): the kernel lacks nf_tables bridge support`);
  } finally {
    spawnSync('ip', ['netns', 'delete', ns]);
  }
}
