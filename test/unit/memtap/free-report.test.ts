import { describe, expect, it } from 'vitest';
import { MAX_FREE_RANGES, mergeFreeRanges, parseFreeChunk, readFreeReport } from '../../../lib/memtap/free-report.js';
import type { XenStore } from '../../../lib/xen/native.js';

// Just enough of a XenStore for reading a report: a map of paths.
function store(entries: Record<string, string>): XenStore {
  return { read: (p: string) => entries[p] ?? null } as unknown as XenStore;
}
const base = '/local/domain/7/data/snowflock/free';

describe('free-page report from a clone', () => {
  it('parses start+count hex items', () => {
    expect(parseFreeChunk('100+ff 2000+1', 0x10000)).toEqual([[0x100, 0xff], [0x2000, 1]]);
  });

  it('rejects malformed items, empty ranges and ranges outside the guest, naming them', () => {
    expect(() => parseFreeChunk('100-ff', 0x10000)).toThrow(/bad item "100-ff"/);
    expect(() => parseFreeChunk('100+0', 0x10000)).toThrow(/outside the guest/);
    expect(() => parseFreeChunk('ff00+200', 0x10000)).toThrow(/ff00\+200 is outside/);
    expect(() => parseFreeChunk('zz+1', 0x10000)).toThrow(/bad item/);
  });

  it('is absent until the guest writes count, then joins every chunk', () => {
    expect(readFreeReport(store({ [`${base}/0`]: '10+2' }), 7, 0x10000)).toBeNull();
    const r = readFreeReport(store({ [`${base}/0`]: '10+2 20+3', [`${base}/1`]: '40+1', [`${base}/count`]: '2' }), 7, 0x10000);
    expect(r).toEqual([[0x10, 2], [0x20, 3], [0x40, 1]]);
  });

  it('refuses a report whose chunks are missing or whose count is nonsense', () => {
    expect(() => readFreeReport(store({ [`${base}/count`]: '2', [`${base}/0`]: '10+2' }), 7, 0x10000)).toThrow(/chunk 1 of 2 is missing/);
    expect(() => readFreeReport(store({ [`${base}/count`]: 'lots' }), 7, 0x10000)).toThrow(/bad chunk count/);
    expect(() => readFreeReport(store({ [`${base}/count`]: '99999' }), 7, 0x10000)).toThrow(/bad chunk count/);
  });

  // memtap marks the report's pages under the fault loop's lock, a page at a time: a guest that
  // repeats one huge range could keep it there for as long as it likes.
  it('comes back sorted, with overlapping, repeated and adjacent ranges merged', () => {
    const r = readFreeReport(store({ [`${base}/0`]: '10+5 12+5 10+5 0+1 1+1', [`${base}/1`]: '100+1 10+1', [`${base}/count`]: '2' }), 7, 0x10000);
    expect(r).toEqual([[0, 2], [0x10, 7], [0x100, 1]]);
    expect(mergeFreeRanges([[5, 1], [0, 10], [20, 1], [10, 10]])).toEqual([[0, 21]]);
  });

  it('walks a guest-sized total however often the guest repeats a range', () => {
    const chunk = Array(300).fill('0+fffff').join(' ');
    const entries: Record<string, string> = { [`${base}/count`]: '1000' };
    for (let i = 0; i < 1000; i++) entries[`${base}/${i}`] = chunk;
    const r = readFreeReport(store(entries), 7, 0x100000)!;
    expect(r).toEqual([[0, 0xfffff]]);
  });

  it('refuses a report of more ranges than any guest needs, naming the limit', () => {
    const items = Array.from({ length: 1000 }, (_, i) => `${(2 * i).toString(16)}+1`).join(' ');
    const chunks = Math.ceil((MAX_FREE_RANGES + 1) / 1000);
    const entries: Record<string, string> = { [`${base}/count`]: String(chunks) };
    for (let i = 0; i < chunks; i++) entries[`${base}/${i}`] = items;
    expect(() => readFreeReport(store(entries), 7, 0x10000)).toThrow(`free-page report: more than ${MAX_FREE_RANGES} ranges`);
  });
});
