import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageIndex } from '../../../lib/memtap/image-index.js';
import { makeFixture, PAGE } from './helpers.js';

// Ranges chosen so a scan chunk (256 pages) ends inside a range, and zero runs cross a range end.
const memoryMap: [number, number][] = [[0, 300], [300, 10], [0x1000, 3], [0xfeffc, 1], [0xfefff, 1]];
const zero = [0, 1, 2, 5, ...Array.from({ length: 20 }, (_, i) => 250 + i), 299, 300, 309, 0x1001, 0xfeffc];
const fx = makeFixture({ memoryMap, zero });
const index = new ImageIndex(fx.imagePath, memoryMap);
afterAll(() => {
  index.close();
  rmSync(fx.dir, { recursive: true, force: true });
});

describe('ImageIndex', () => {
  it('maps each gfn to its position in the image, and unknown gfns to undefined', () => {
    expect(index.pages).toBe(315);
    expect(index.indexOf(0)).toBe(0);
    expect(index.indexOf(299)).toBe(299);
    expect(index.indexOf(309)).toBe(309);
    expect(index.indexOf(0x1000)).toBe(310);
    expect(index.indexOf(0x1002)).toBe(312);
    expect(index.indexOf(0xfeffc)).toBe(313);
    expect(index.indexOf(0xfefff)).toBe(314);
    for (const g of [310, 0xfff, 0x1003, 0xfeffd, 0xfeffe, 0xff000, -1, 2 ** 40]) expect(index.indexOf(g)).toBeUndefined();
  });

  it('reads pages by index, coalesced or scattered, into a buffer at an offset', async () => {
    const gfns = [3, 4, 5, 6, 0x1002, 0x1000, 0xfefff, 299, 300];
    const into = Buffer.alloc(7 + gfns.length * PAGE, 0xee);
    await index.readInto(gfns.map((g) => index.indexOf(g)!), into, 7);
    expect(into.subarray(0, 7).equals(Buffer.alloc(7, 0xee))).toBe(true);
    gfns.forEach((g, i) => expect(into.subarray(7 + i * PAGE, 7 + (i + 1) * PAGE).equals(fx.page(g)), `gfn ${g}`).toBe(true));
    expect(index.readPageSync(0x1002)!.equals(fx.page(0x1002))).toBe(true);
    expect(index.readPageSync(0x1003)).toBeUndefined();
  });

  it('finds the all-zero pages and coalesces the rest into gfn ranges', async () => {
    const scan = await index.scanZero();
    expect(scan.zeroPages).toBe(zero.length);
    expect(scan.nonzero).toEqual([[3, 2], [6, 244], [270, 29], [301, 8], [0x1000, 1], [0x1002, 1], [0xfefff, 1]]);
  });

  it('refuses to read once closed', async () => {
    const other = new ImageIndex(fx.imagePath, memoryMap);
    other.close();
    other.close();
    await expect(other.readInto([0], Buffer.alloc(PAGE), 0)).rejects.toThrow(/closed/);
  });
});
