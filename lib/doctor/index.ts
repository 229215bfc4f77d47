// `snowflock doctor`: what this host can do for snowflock, and why not.
import { xenChecks } from './xen-checks.js';
import { hostChecks } from './host-checks.js';
import { testboxChecks } from './testbox-checks.js';
import { networkChecks } from './network-checks.js';
import { diskChecks, probeDisks } from './disk-checks.js';
import type { Check } from './check.js';

export type { Check } from './check.js';

export async function runDoctor(opts: { probeFeatures: boolean }): Promise<Check[]> {
  return [...(await xenChecks(opts)), ...hostChecks(), ...(await networkChecks()), ...diskChecks(probeDisks()), ...testboxChecks()];
}
