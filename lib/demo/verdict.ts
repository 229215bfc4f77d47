// The demo's verdict: it exists to show clones running on the parent's exact memory, so a
// pattern page that did not match in any clone fails it (exit 1), not just a printed count.

/** SF-MEM lines of the memtest workload ("SF-MEM pass=3 gen=3 bad=0 pages=16384 vmid=1"). */
export function patternMismatches(consoleText: string, vmid: number): number {
  let bad = 0;
  for (const m of consoleText.matchAll(new RegExp(`SF-MEM pass=\\d+ gen=\\d+ bad=(\\d+) pages=\\d+ vmid=${vmid}\\b`, 'g'))) bad += Number(m[1]);
  return bad;
}

/** Throws when any clone read a page that did not match the parent's pattern. */
export function checkMismatches(bad: number): void {
  if (bad !== 0) throw new Error(`${bad} pattern page(s) did not match in the clones: a clone saw memory other than the parent's at the fork`);
}
