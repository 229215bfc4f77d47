// Runs a native unit test executable (built by node-gyp from native/test/, binding.gyp) that
// prints TAP, and turns each of its tests into a vitest test. Built only where the addon gets
// the Xen bindings (libxen-dev headers).
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadAddon } from '../../../lib/xen/native.js';

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

/**
 * `expected` are the C++ test names; a test renamed or dropped there must be renamed or
 * dropped here.
 */
export function describeNativeTap(name: string, title: string, expected: string[]): void {
  const executable = join(fileURLToPath(new URL('../../..', import.meta.url)), 'build', 'Release', name);
  const builtWithXen = loadAddon().builtWithXen;
  const shown = builtWithXen ? title : `${title}: skipped, the addon was built without Xen headers (libxen-dev), so there is no ${name}`;

  describe.skipIf(!builtWithXen)(shown, () => {
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

    it.each(expected)('%s', (test) => {
      const result = tap.results.get(test);
      expect(result, `no TAP line for "${test}":\n${output}`).toBeDefined();
      expect(result!.ok, result!.reason).toBe(true);
    });
  });
}
