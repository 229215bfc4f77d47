// Doctor checks for how clones will receive pages: IP multicast (mcdist) or its TCP fallback.
import { probeMulticast } from '../mcdist/probe.js';
import { check, type Check } from './check.js';

export async function networkChecks(): Promise<Check[]> {
  const r = await probeMulticast();
  return [
    r.available
      ? check('network.multicast', 'network', 'mcdist multicast', 'ok', 'this host delivers IP multicast; mcdist will multicast pages (falls back to TCP at run time if the network drops it)')
      : check('network.multicast', 'network', 'mcdist multicast', 'warn', `unavailable (${r.reason ?? 'no delivery'}): mcdist will use unicast TCP`),
  ];
}
