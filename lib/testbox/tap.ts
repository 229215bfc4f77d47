// Reads the node:test TAP stream that dom0 prints on its console.
export interface TapSummary {
  passed: string[];
  failed: string[];
  skipped: string[];
  /** suite files ("85.guest-api") a failure's diagnostics point at */
  failedFiles: string[];
  counts: { tests: number; pass: number; fail: number; skipped: number } | null;
}

export function newTapSummary(): TapSummary {
  return { passed: [], failed: [], skipped: [], failedFiles: [], counts: null };
}

/** Feeds one console line; top-level results only (subtests are indented). */
export function readTapLine(summary: TapSummary, line: string): void {
  const result = /^(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$/.exec(line);
  if (result) {
    const name = result[2] ?? '';
    if (result[3] === 'SKIP') summary.skipped.push(name);
    else if (result[1] === 'ok') summary.passed.push(name);
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
