// Reads the node:test TAP stream that dom0 prints on its console.
export interface TapSkip {
  /** the suite file ("87.guest-net") that printed the last suite-file mark before it; "?" when none did */
  file: string;
  test: string;
  /** what node:test printed after "# SKIP" */
  reason: string;
}

export interface TapSummary {
  passed: string[];
  failed: string[];
  skipped: string[];
  skips: TapSkip[];
  /** the suite file whose tests come now (suiteFileMark) */
  currentFile?: string;
  /** suite files ("85.guest-api") a failure's diagnostics point at */
  failedFiles: string[];
  counts: { tests: number; pass: number; fail: number; skipped: number } | null;
}

export function newTapSummary(): TapSummary {
  return { passed: [], failed: [], skipped: [], skips: [], failedFiles: [], counts: null };
}

/**
 * The line each suite file prints to stderr when it loads (test/testbox/helpers.ts). node:test
 * runs the files one at a time and prints a file's stderr as "# ..." before that file's results,
 * so it says which file the results that follow belong to (a skip has no location line).
 */
export function suiteFileMark(file: string): string {
  return `SNOWFLOCK-MARK suite-file file=${file}`;
}

/** "70.memtap" for .../test/testbox/70.memtap.test.js (or .ts). */
export function suiteFileName(path: string): string {
  return /([\w.-]+)\.test\.[jt]s$/.exec(path)?.[1] ?? path;
}

/** Feeds one console line; top-level results only (subtests are indented). */
export function readTapLine(summary: TapSummary, line: string): void {
  const file = /SNOWFLOCK-MARK suite-file file=([\w.-]+)/.exec(line);
  if (file) {
    summary.currentFile = file[1]!;
    return;
  }
  const result = /^(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO)\b ?(.*))?$/.exec(line);
  if (result) {
    const name = result[2] ?? '';
    if (result[3] === 'SKIP') {
      summary.skipped.push(name);
      summary.skips.push({ file: summary.currentFile ?? '?', test: name, reason: result[4] ?? '' });
    } else if (result[1] === 'ok') summary.passed.push(name);
    else summary.failed.push(name);
    return;
  }
  // node:test prints a location only in a failure's diagnostics (top level or nested).
  const location = /^\s*location: '.*\/test\/testbox\/([\w.-]+)\.test\.js:\d+/.exec(line);
  if (location) {
    if (!summary.failedFiles.includes(location[1]!)) summary.failedFiles.push(location[1]!);
    return;
  }
  const count = /^# (tests|pass|fail|skipped) (\d+)$/.exec(line);
  if (count) {
    summary.counts ??= { tests: 0, pass: 0, fail: 0, skipped: 0 };
    summary.counts[count[1] as keyof NonNullable<TapSummary['counts']>] = Number(count[2]);
  }
}
