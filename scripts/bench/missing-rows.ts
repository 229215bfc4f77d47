// A benchmark's tables leave out the rows it could not measure; its last line names them and
// the run fails (exit 1), so a bench with holes never passes for a complete one.

/** Prints "missing rows: a, b" and sets exit status 1 when any row is missing. */
export function reportMissingRows(say: (line: string) => void, missing: string[]): void {
  if (missing.length === 0) return;
  say(`missing rows: ${missing.join(', ')}`);
  process.exitCode = 1;
}
