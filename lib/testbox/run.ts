// Runs a job in N test boxes at once and gathers what each dom0 reported.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { bootBox, type BoxResult, type BoxSpec } from './qemu.js';
import { createBoxNetwork, type BoxNetwork } from './network.js';
import { artifacts, type XenFlavour } from './paths.js';
import { newTapSummary, readTapLine, type TapSummary } from './tap.js';
import { newFaultReader, readFaultLine, type TripleFault } from './faults.js';
import { judgeSkips, type SkipReport } from './skips.js';
import { emulatorVerdict, type AttributedFault } from './retry.js';

export interface TestboxRunOptions {
  hosts: number;
  flavour: XenFlavour;
  job: BoxSpec['job'];
  jobArgs: string[];
  only?: string;
  env?: Record<string, string>;
  timeoutSec: number;
  /** the Debian guest's root disk for every box (BoxSpec.debianDisk) */
  debianDisk?: string;
  /** called with each console line of each box */
  onLine?: (box: number, line: string) => void;
}

export interface TestboxBoxReport extends BoxResult {
  tap: TapSummary;
  marks: string[];
  /** triple faults Xen printed on this box, with their kind (faults.ts) */
  faults: TripleFault[];
  /** every skip of the test job, judged against lib/testbox/expected-skips.ts */
  skips: SkipReport[];
}

/** What one box printed, read line by line (runTestbox; unit tests feed console logs to it). */
export interface BoxConsole {
  tap: TapSummary;
  marks: string[];
  faults: ReturnType<typeof newFaultReader>;
}

export function newBoxConsole(): BoxConsole {
  return { tap: newTapSummary(), marks: [], faults: newFaultReader() };
}

export function readBoxLine(c: BoxConsole, line: string): void {
  readTapLine(c.tap, line);
  readFaultLine(c.faults, line);
  const mark = /SNOWFLOCK-MARK (.*)/.exec(line);
  if (mark) c.marks.push(mark[1]!);
}

/** A box's report from its console and its QEMU run. */
export function boxReport(result: BoxResult, c: BoxConsole, env: { flavour: XenFlavour; hosts: number; debianDisk?: string }): TestboxBoxReport {
  const skips = judgeSkips(c.tap.skips, { flavour: env.flavour, hosts: env.hosts, box: result.box, debianDisk: env.debianDisk !== undefined });
  return { ...result, tap: c.tap, marks: c.marks, faults: c.faults.faults, skips };
}

/** ok, and the emulator's verdict with every fault attributed, for a run's boxes. */
export function judgeRun(job: string, boxes: TestboxBoxReport[]): Pick<TestboxReport, 'ok' | 'faults' | 'emulator'> {
  const ok = boxes.every((b) => b.jobRc === 0 && !b.timedOut && b.tap.failed.length === 0 && b.skips.every((s) => s.expected));
  const { rerun, reason, faults } = emulatorVerdict({ ok, job, boxes });
  return { ok, faults, emulator: { rerun, reason } };
}

export interface TestboxReport {
  ok: boolean;
  hosts: number;
  flavour: XenFlavour;
  job: string;
  runDir: string;
  boxes: TestboxBoxReport[];
  /** every triple fault of every box: domain, kind, owning suite file, and whether it justified a rerun */
  faults: AttributedFault[];
  /** whether the emulated CPU alone explains the failure (retry.ts), and why or why not */
  emulator: { rerun: boolean; reason: string };
  /** runs spoiled by the emulated CPU, oldest first, when this one is a rerun */
  earlierAttempts?: TestboxReport[];
}

export async function runTestbox(opts: TestboxRunOptions): Promise<TestboxReport> {
  if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 8) throw new Error(`--hosts must be 1..8, got ${opts.hosts}`);
  const runDir = join(artifacts.runsDir(), new Date().toISOString().replace(/[:.]/g, '-'));
  mkdirSync(runDir, { recursive: true });
  let network: BoxNetwork | undefined;
  if (opts.hosts > 1) network = createBoxNetwork(opts.hosts);
  // A box that froze spoils the run: the others would only wait for it until their timeout.
  const spoiled = new AbortController();
  try {
    const boxes = Array.from({ length: opts.hosts }, (_, i) => i + 1).map(async (box): Promise<TestboxBoxReport> => {
      const seen = newBoxConsole();
      const result = await bootBox(
        {
          box,
          hosts: opts.hosts,
          flavour: opts.flavour,
          job: opts.job,
          jobArgs: opts.jobArgs,
          only: opts.only,
          env: opts.env,
          timeoutSec: opts.timeoutSec,
          ...(opts.debianDisk ? { debianDisk: opts.debianDisk } : {}),
          logFile: join(runDir, `box${box}.log`),
          network: network ? { namespace: network.namespace, tap: network.tapFor(box) } : undefined,
          signal: spoiled.signal,
        },
        (line) => {
          readBoxLine(seen, line);
          opts.onLine?.(box, line);
        },
      );
      if (result.froze) spoiled.abort();
      return boxReport(result, seen, opts);
    });
    const reports = await Promise.all(boxes);
    return { ...judgeRun(opts.job, reports), hosts: opts.hosts, flavour: opts.flavour, job: opts.job, runDir, boxes: reports };
  } finally {
    network?.destroy();
  }
}

/**
 * Whether another attempt fits in the budget (CI's 90 minutes): the time spent so far plus what
 * the next attempt should take, the last one's length, or half of it when only the failed files
 * run again (they are a part of the run at most).
 */
export function retryFits(o: { elapsedMs: number; lastAttemptMs: number; narrowed: boolean; budgetMs: number }): boolean {
  return o.elapsedMs + (o.narrowed ? o.lastAttemptMs / 2 : o.lastAttemptMs) <= o.budgetMs;
}

/**
 * What a rerun of a spoiled test run needs: only the suite files that failed, when every box
 * finished and each failure names its file; otherwise everything the run was asked for
 * (`only`, undefined for the whole suite). Multi-host files run on every box again.
 */
export function rerunScope(report: TestboxReport, only: string | undefined): string | undefined {
  const unfinished = report.boxes.some((b) => b.timedOut || b.froze || b.jobRc === null);
  const unplaced = report.boxes.some((b) => b.tap.failed.length > 0 && b.tap.failedFiles.length === 0);
  const files = [...new Set(report.boxes.flatMap((b) => b.tap.failedFiles))].sort();
  if (unfinished || unplaced || files.length === 0) return only;
  return files.join(',');
}
