// Runs a job in N test boxes at once and gathers what each dom0 reported.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FROZEN_AFTER_SEC, bootBox, type BoxResult, type BoxSpec } from './qemu.js';
import { createBoxNetwork, type BoxNetwork } from './network.js';
import { artifacts, type XenFlavour } from './paths.js';
import { newTapSummary, readTapLine, type TapSummary } from './tap.js';

export interface TestboxRunOptions {
  hosts: number;
  flavour: XenFlavour;
  job: BoxSpec['job'];
  jobArgs: string[];
  only?: string;
  env?: Record<string, string>;
  timeoutSec: number;
  /** called with each console line of each box */
  onLine?: (box: number, line: string) => void;
}

export interface TestboxBoxReport extends BoxResult {
  tap: TapSummary;
  marks: string[];
  /** guest vCPUs Xen reported as triple-faulted ("d5v0"), see emulatorTripleFaults */
  tripleFaults: string[];
}

export interface TestboxReport {
  ok: boolean;
  hosts: number;
  flavour: XenFlavour;
  job: string;
  runDir: string;
  boxes: TestboxBoxReport[];
  /** runs spoiled by the emulated CPU (emulatorTripleFaults), oldest first, when this one is a rerun */
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
      const tap = newTapSummary();
      const marks: string[] = [];
      const tripleFaults: string[] = [];
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
          logFile: join(runDir, `box${box}.log`),
          network: network ? { namespace: network.namespace, tap: network.tapFor(box) } : undefined,
          signal: spoiled.signal,
        },
        (line) => {
          readTapLine(tap, line);
          const mark = /SNOWFLOCK-MARK (.*)/.exec(line);
          if (mark) marks.push(mark[1]!);
          const fault = /^\(XEN\) (d\d+v\d+) Triple fault/.exec(line);
          if (fault) tripleFaults.push(fault[1]!);
          opts.onLine?.(box, line);
        },
      );
      if (result.froze) spoiled.abort();
      return { ...result, tap, marks, tripleFaults };
    });
    const reports = await Promise.all(boxes);
    const ok = reports.every((b) => b.jobRc === 0 && !b.timedOut && b.tap.failed.length === 0);
    return { ok, hosts: opts.hosts, flavour: opts.flavour, job: opts.job, runDir, boxes: reports };
  } finally {
    network?.destroy();
  }
}

/**
 * Guests that triple-faulted during a failed run. Under QEMU TCG (SVM without next-RIP save,
 * so Xen decodes every intercepted instruction itself) a busy PVH guest now and then
 * triple-faults at an intercepted instruction, the same one in parents and clones, and once
 * with Xen's own code segment in the guest's saved state: the emulated CPU, not the guest.
 * A failed test run that shows one is run again (three times at most); earlier attempts stay in the report.
 * This is for the test box only: on a real Xen host a triple fault fails the run.
 */
export function emulatorTripleFaults(report: TestboxReport): string[] {
  if (report.ok || report.job !== 'test') return [];
  return report.boxes.flatMap((b) => [
    ...b.tripleFaults.map((f) => `box ${b.box}: ${f}`),
    ...(b.froze ? [`box ${b.box}: froze (no output for ${FROZEN_AFTER_SEC} s)`] : []),
  ]);
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
