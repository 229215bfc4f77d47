import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageIndex } from '../../../lib/memtap/image-index.js';
import { buildPlan } from '../../../lib/memtap/server.js';
import { makeFixture } from './helpers.js';

// Alternating zero pages: one evict range per non-zero page. gfn 20 is a special page.
const memoryMap: [number, number][] = [[0, 40], [0x100, 10]];
const zero = [...Array.from({ length: 20 }, (_, i) => 2 * i + 1), 0x101, 0x103, 0x105, 0x107, 0x109];
const fx = makeFixture({ memoryMap, zero, specialGfns: [[1, 20]] });
const index = new ImageIndex(fx.imagePath, memoryMap);
afterAll(() => {
  index.close();
  rmSync(fx.dir, { recursive: true, force: true });
});
const covered = (ranges: [number, number][]) => ranges.flatMap(([s, c]) => Array.from({ length: c }, (_, i) => s + i));

describe('buildPlan', () => {
  it('pages out every non-zero, non-special page', async () => {
    const plan = await buildPlan(fx.descriptor, index, 128);
    expect(plan).toMatchObject({ pages: 50, zeroPages: 25, evictPages: 24, eagerPages: 0, eager: [] });
    expect(plan.evict).toHaveLength(24);
    expect(covered(plan.evict)).toEqual(fx.gfns.filter((g) => !zero.includes(g) && g !== 20));
  });

  it('bridges the smallest all-zero gaps when the ranges would not fit a WELCOME', async () => {
    const full = await buildPlan(fx.descriptor, index, 128);
    const plan = await buildPlan(fx.descriptor, index, 128, 10);
    expect(plan.evict).toHaveLength(10);
    const pages = covered(plan.evict);
    for (const g of covered(full.evict)) expect(pages).toContain(g);
    for (const g of pages.filter((x) => !covered(full.evict).includes(x))) expect(zero).toContain(g); // only zero pages added
    expect(pages).not.toContain(20); // never across a special page
    expect(pages.some((g) => g >= 40 && g < 0x100)).toBe(false); // nor across a hole
    expect(plan.evictPages).toBe(pages.length);
  });

  it('fails clearly when even bridging cannot make it fit', async () => {
    await expect(buildPlan(fx.descriptor, index, 128, 2)).rejects.toThrow(/too fragmented/);
  });
});
