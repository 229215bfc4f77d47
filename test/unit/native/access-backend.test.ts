// The mem_access fault backend (native/access_backend.cc) against fake Xen libraries: a C++
// executable built by node-gyp next to the addon (binding.gyp, native/test/) that prints TAP.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadAddon } from '../../../lib/xen/native.js';

const executable = join(fileURLToPath(new URL('../../..', import.meta.url)), 'build', 'Release', 'access_backend_test');

// The C++ test names; a test renamed or dropped there must be renamed or dropped here.
const expected = [
  "open enables the monitor and binds its ring's event channel",
  'open refuses to take over a ring',
  'open reports a failed xc_monitor_enable',
  'open with a failed event channel bind unmaps the ring and disables the monitor',
  'Remove restricts each run of consecutive gfns with one xc_set_mem_access',
  'Remove: EINVAL on the first run means no mem_access here (Intel EPT only)',
  "Remove: a failure on a later run refuses exactly that run's gfns",
  'Install copies each staging page byte-exactly into its gfn',
  'Install lifts access to rwx once per run',
  'Install reports a page that did not map for that page only, and leaves it restricted',
  'Install reports -errno for every page of a run whose lift failed',
  "Install with a failed foreign map throws with Xen's log line and lifts nothing",
  'FaultGfn takes the gfn of a mem_access request popped from the ring',
  'FaultGfn refuses requests of other reasons',
  "the channel unmasks the pending port and notifies Xen's end",
  'closing disables the monitor, unbinds the event channel and unmaps the ring',
];

interface TapResult {
  ok: boolean;
  number: number;
  reason?: string;
}

function parseTap(stdout: string): { results: Map<string, TapResult>; plan?: number } {
  const results = new Map<string, TapResult>();
  let plan: number | undefined;
  for (const line of stdout.split('\n')) {
    const test = /^(ok|not ok) (\d+) - (.*?)(?: # (.*))?$/.exec(line);
    if (test) results.set(test[3]!, { ok: test[1] === 'ok', number: Number(test[2]), reason: test[4] });
    const planned = /^1\.\.(\d+)$/.exec(line);
    if (planned) plan = Number(planned[1]);
  }
  return { results, plan };
}

// The executable is built only where the addon gets the Xen bindings (libxen-dev headers).
const builtWithXen = loadAddon().builtWithXen;
const title = builtWithXen
  ? 'mem_access backend against fake Xen (native)'
  : 'mem_access backend (native): skipped, the addon was built without Xen headers (libxen-dev), so there is no access_backend_test';

describe.skipIf(!builtWithXen)(title, () => {
  let run: SpawnSyncReturns<string>;
  let output = '';
  let tap: ReturnType<typeof parseTap>;

  beforeAll(() => {
    if (!existsSync(executable)) {
      throw new Error(`${executable} is missing although the addon has Xen bindings; run \`npm run build:native\``);
    }
    run = spawnSync(executable, [], { encoding: 'utf8', timeout: 15_000 });
    if (run.error) throw run.error;
    output = `${run.stdout}${run.stderr}`;
    tap = parseTap(run.stdout);
  });

  it('exits 0', () => {
    expect(run.signal, `killed by ${run.signal}:\n${output}`).toBeNull();
    expect(run.status, `exit ${run.status}:\n${output}`).toBe(0);
  });

  it('reports every test it ran, all in the plan', () => {
    expect(tap.plan, output).toBe(tap.results.size);
    expect([...tap.results.keys()].sort(), output).toEqual([...expected].sort());
  });

  it.each(expected)('%s', (name) => {
    const result = tap.results.get(name);
    expect(result, `no TAP line for "${name}":\n${output}`).toBeDefined();
    expect(result!.ok, result!.reason).toBe(true);
  });
});
