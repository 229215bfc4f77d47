// The clone's report of the pages its kernel had free at fork (written by the guest agent's
// sf-freepages under its own data/snowflock/free): chunks "0".."n-1" of "start+count" hex
// items, then "count". Free pages need no fetch: whatever the kernel puts there next
// overwrites them, so memtap zero-fills them locally.
import type { GfnRange, XenStore } from '../xen/native.js';

export function freeReportPath(domid: number): string {
  return `/local/domain/${domid}/data/snowflock/free`;
}

/**
 * Where memtap acknowledges a report: the number of pages it will zero-fill ("0" when the
 * heuristic is off), or "rejected". The guest waits for it before allocating, so that what
 * it allocates next was already applied.
 */
export function freeAppliedPath(domid: number): string {
  return `/local/domain/${domid}/data/snowflock/free-applied`;
}

/**
 * Most ranges a report may hold: 2^20 covers a 4 GiB guest whose free pages alternate with
 * used ones. A longer report is refused (the clone's pages are then fetched, not zero-filled).
 */
export const MAX_FREE_RANGES = 2 ** 20;

/** Parses one chunk; throws naming the bad item (the guest wrote it, so trust nothing). */
export function parseFreeChunk(text: string, maxGfn: number): GfnRange[] {
  const out: GfnRange[] = [];
  for (const item of text.trim().split(/\s+/).filter(Boolean)) {
    const m = /^([0-9a-fA-F]{1,13})\+([0-9a-fA-F]{1,13})$/.exec(item);
    if (!m) throw new Error(`free-page report: bad item "${item.slice(0, 40)}"`);
    const start = parseInt(m[1]!, 16);
    const count = parseInt(m[2]!, 16);
    if (count === 0 || start + count > maxGfn) throw new Error(`free-page report: range ${item} is outside the guest`);
    out.push([start, count]);
  }
  return out;
}

/**
 * The whole report, or null while the guest has not finished writing it; sorted by start, with
 * overlapping and adjacent ranges merged. memtap marks the pages a page at a time under its
 * fault loop's lock, so the guest must not be able to make it walk a page twice: merged, the
 * walk is at most the guest's size.
 */
export function readFreeReport(xs: XenStore, domid: number, maxGfn: number): GfnRange[] | null {
  const base = freeReportPath(domid);
  const count = xs.read(`${base}/count`);
  if (count === null) return null;
  const chunks = Number(count);
  if (!Number.isInteger(chunks) || chunks < 0 || chunks > 10_000) throw new Error(`free-page report: bad chunk count "${count}"`);
  const ranges: GfnRange[] = [];
  for (let i = 0; i < chunks; i++) {
    const chunk = xs.read(`${base}/${i}`);
    if (chunk === null) throw new Error(`free-page report: chunk ${i} of ${chunks} is missing`);
    for (const r of parseFreeChunk(chunk, maxGfn)) ranges.push(r);
    if (ranges.length > MAX_FREE_RANGES) throw new Error(`free-page report: more than ${MAX_FREE_RANGES} ranges`);
  }
  return mergeFreeRanges(ranges);
}

/** Sorted by start, overlapping and adjacent ranges joined. */
export function mergeFreeRanges(ranges: GfnRange[]): GfnRange[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: GfnRange[] = [];
  for (const [start, count] of sorted) {
    const last = out[out.length - 1];
    if (last && start <= last[0] + last[1]) last[1] = Math.max(last[1], start + count - last[0]);
    else out.push([start, count]);
  }
  return out;
}
