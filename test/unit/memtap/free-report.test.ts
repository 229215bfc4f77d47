import { describe, expect, it } from 'vitest';
import { parseFreeChunk, readFreeReport } from '../../../lib/memtap/free-report.js';
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
});
