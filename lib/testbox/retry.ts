// Whether a failed test box run was spoiled by the emulated CPU and may run again. A triple
// fault is the emulator's only when nothing snowflock did can explain it: a wrong page served
// by memtap or a bad restored CPU state would show as exactly such a fault in a clone. So a run
// is rerun only when every failed suite file had a fault in a domain of its own that snowflock
// did not build (a guest the suite started with xl) or a fault of the vmrun kind (faults.ts),
// or a box froze. Any other failure is final.
import { FROZEN_AFTER_SEC } from './qemu.js';
import { domainOwners, type TripleFault } from './faults.js';
import type { SkipReport } from './skips.js';
import type { TapSummary } from './tap.js';

/** What the verdict needs of one box's report (run.ts: TestboxBoxReport). */
export interface BoxOutcome {
  box: number;
  jobRc: number | null;
  timedOut: boolean;
  froze: boolean;
  tap: TapSummary;
  marks: string[];
  faults: TripleFault[];
  skips: SkipReport[];
}

export interface AttributedFault extends TripleFault {
  box: number;
  /** the suite file that owned the domain; absent when no file claimed it */
  file?: string;
  builtBy?: 'xl' | 'other';
  /** set when the suite gave up on the domain and started another (bootGuest) */
  dropped?: string;
  /** whether this fault can explain a failure of its file */
  emulatorOnly: boolean;
  justifiedRerun: boolean;
  why: string;
}

export interface EmulatorVerdict {
  rerun: boolean;
  reason: string;
  faults: AttributedFault[];
}

/** The suite files that failed on any box: a failed test, or a skip where the file should run. */
export function failedFiles(boxes: BoxOutcome[]): string[] {
  const files = boxes.flatMap((b) => [...b.tap.failedFiles, ...b.skips.filter((s) => !s.expected).map((s) => s.file)]);
  return [...new Set(files)].sort();
}

function attribute(b: BoxOutcome, f: TripleFault, failed: Set<string>): AttributedFault {
  const owner = domainOwners(b.marks).get(f.domid);
  const base = { ...f, box: b.box, file: owner?.file, builtBy: owner?.builtBy, dropped: owner?.dropped, justifiedRerun: false };
  if (!owner) return { ...base, emulatorOnly: false, why: 'no suite file claimed this domain' };
  if (owner.dropped) return { ...base, emulatorOnly: false, why: `the suite replaced this guest (${owner.dropped}): it cannot explain a later failure` };
  if (owner.builtBy === 'other' && f.kind !== 'vmrun') {
    return { ...base, emulatorOnly: false, why: `not a guest the suite started with xl (a clone, a probe or an xl restore) and of the ${f.kind} kind: snowflock may have caused it` };
  }
  const what = f.kind === 'vmrun' ? 'vmrun kind (Xen\'s own state in the guest\'s)' : 'a guest the suite started with xl';
  if (!failed.has(owner.file)) return { ...base, emulatorOnly: true, why: `${what}, but ${owner.file} did not fail` };
  return { ...base, emulatorOnly: true, why: `${what}, in ${owner.file}, which failed` };
}

/** Why a box's failure cannot be tied to a suite file, or undefined when it can. */
function unplaced(b: BoxOutcome): string | undefined {
  if (b.timedOut) return `box ${b.box} timed out`;
  if (b.jobRc === null) return `box ${b.box} ended without a result`;
  if (b.tap.failed.length > 0 && b.tap.failedFiles.length === 0) return `box ${b.box}: a failed test names no suite file`;
  if (b.jobRc !== 0 && b.tap.failed.length === 0) return `box ${b.box}: the job failed (rc ${b.jobRc}) without a failed test`;
  return undefined;
}

export function emulatorVerdict(report: { ok: boolean; job: string; boxes: BoxOutcome[] }): EmulatorVerdict {
  const failed = new Set(report.ok ? [] : failedFiles(report.boxes));
  const faults = report.boxes.flatMap((b) => b.faults.map((f) => attribute(b, f, failed)));
  const verdict = (rerun: boolean, reason: string): EmulatorVerdict => ({
    rerun, reason, faults: faults.map((f) => ({ ...f, justifiedRerun: rerun && f.emulatorOnly && !!f.file && failed.has(f.file) })),
  });
  if (report.ok) return verdict(false, 'the run passed');
  if (report.job !== 'test') return verdict(false, 'only test runs are run again');
  const froze = report.boxes.filter((b) => b.froze).map((b) => `box ${b.box} froze (no output for ${FROZEN_AFTER_SEC} s)`);
  if (froze.length) return verdict(true, froze.join(', '));
  const loose = report.boxes.map(unplaced).filter((w): w is string => w !== undefined);
  if (loose.length) return verdict(false, `${loose.join(', ')}: no failure to tie to a fault`);
  if (failed.size === 0) return verdict(false, 'no failed suite file');
  const unexplained = [...failed].filter((file) => !faults.some((f) => f.emulatorOnly && f.file === file));
  if (unexplained.length) return verdict(false, `no fault the emulator alone explains in ${unexplained.join(', ')}`);
  return verdict(true, [...failed].map((file) => `${file}: ${faults.filter((f) => f.emulatorOnly && f.file === file).map((f) => `box ${f.box} d${f.domid} ${f.kind}`).join(', ')}`).join('; '));
}

/** One line per fault for the summary. */
export function faultLine(f: AttributedFault): string {
  const owner = f.file ? `${f.file}'s ${f.builtBy === 'xl' ? 'xl guest' : 'domain (not xl-created by the suite)'}` : 'unclaimed domain';
  return `box ${f.box}: ${f.vcpu} triple fault, ${f.kind} kind${f.rip ? ` at ${f.rip}` : ''}, ${owner}: ${f.why}${f.justifiedRerun ? ' (justified the rerun)' : ''}`;
}
