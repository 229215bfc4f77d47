// Output helpers shared by the commands: xl-like tables, --json, and exit codes scripts can trust.
export const ExitCode = {
  ok: 0,
  /** the operation ran and failed (a test failed, a check required by --require is missing) */
  failed: 1,
  /** bad command line */
  usage: 2,
  /** Xen is not present or not usable here */
  noXen: 3,
} as const;

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : (c ?? '').padEnd(widths[i] ?? 0))).join('  ').trimEnd())
    .join('\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Progress goes to stderr so that stdout stays parseable. */
export function progress(message: string): void {
  if (!process.stderr.isTTY && process.env.SNOWFLOCK_QUIET) return;
  process.stderr.write(`snowflock: ${message}\n`);
}
