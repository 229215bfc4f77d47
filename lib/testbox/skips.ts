// Skips are counted per file and gated: a file that skips where it should run fails the run.
import { EXPECTED_SKIPS, type SkipWhen } from './expected-skips.js';
import type { XenFlavour } from './paths.js';
import type { TapSkip } from './tap.js';

export interface SkipEnvironment {
  /** 'host': --on-host, a real Xen dom0 */
  flavour: XenFlavour | 'host';
  hosts: number;
  box: number;
  /** the boxes have the Debian guest's disk (--debian-disk) */
  debianDisk?: boolean;
}

export interface SkipReport extends TapSkip {
  expected: boolean;
}

const HOLDS: Record<SkipWhen, (e: SkipEnvironment) => boolean> = {
  'one host': (e) => e.hosts < 2,
  "Debian's Xen": (e) => e.flavour === 'stock',
  'not box 1': (e) => e.box !== 1,
  'box 3 or later': (e) => e.box > 2,
  'real host': (e) => e.flavour === 'host',
  'no Debian disk': (e) => !e.debianDisk,
  always: () => true,
};

/** Each skip of one box (or host), marked expected when a row of EXPECTED_SKIPS allows it here. */
export function judgeSkips(skips: TapSkip[], env: SkipEnvironment): SkipReport[] {
  return skips.map((s) => ({
    ...s,
    expected: EXPECTED_SKIPS.some((e) => (e.file === '*' || e.file === s.file) && HOLDS[e.when](env) && e.reason.test(s.reason)),
  }));
}

/** "87.guest-net skipped "clones get ..." here: no bridge sfbr0 in this dom0", one line per unexpected skip. */
export function unexpectedSkipLines(skips: SkipReport[]): string[] {
  return skips.filter((s) => !s.expected).map((s) => `${s.file === '?' ? 'a test of an unknown suite file' : s.file} skipped "${s.test}" where it should run: ${s.reason || '(no reason given)'}`);
}

/** Skips grouped as "70.memtap: 6 skipped (Debian's Xen has no mem_paging ...)" for the summary. */
export function skipSummaryLines(skips: SkipReport[]): string[] {
  const groups = new Map<string, number>();
  for (const s of skips) {
    const key = `${s.file}: ${s.expected ? '' : 'UNEXPECTED '}skip (${s.reason})`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return [...groups].map(([key, n]) => `${key} x${n}`);
}
