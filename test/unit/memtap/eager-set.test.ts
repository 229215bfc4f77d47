import { describe, expect, it } from 'vitest';
import { cpuRecords, eagerGfns, translate } from '../../../lib/memtap/eager-set.js';
import { PageTables, cpuRecord, hvmContext } from './helpers.js';

const KERNEL = 0xffff_8880_0000_0000n;
const reader = (pt: PageTables) => (gfn: number) => pt.pages.get(gfn);

describe('HVM context parsing', () => {
  it('finds each CPU record and its registers among other records', () => {
    const ctx = hvmContext([cpuRecord(0, { cr3: 0x5000n, gsBase: KERNEL }), cpuRecord(1, { cr3: 0x6000n, shadowGs: KERNEL + 0x1000n })]);
    const cpus = cpuRecords(ctx);
    expect(cpus.map((c) => [c.vcpu, c.cr3, c.gsBase, c.shadowGs])).toEqual([[0, 0x5000n, KERNEL, 0n], [1, 0x6000n, 0n, KERNEL + 0x1000n]]);
    expect(cpus[0]!.efer).toBe(0xd01n);
  });

  it('stops quietly at a truncated record', () => {
    const ctx = hvmContext([cpuRecord(0, { cr3: 0x5000n, gsBase: KERNEL }), cpuRecord(1, { cr3: 0x6000n, gsBase: KERNEL })]);
    const cut = ctx.subarray(0, ctx.length - 8 - 500);
    expect(cpuRecords(cut).map((c) => c.vcpu)).toEqual([0]);
  });
});

describe('page walk', () => {
  it('translates 4 KiB, 2 MiB and 1 GiB mappings', () => {
    const pt = new PageTables(0x10, 0x11);
    pt.map4k(KERNEL + 0x5000n, 0x777);
    pt.map2m(KERNEL + 0x4000_0000n, 0x200 * 3); // 2 MiB page at gfn 0x600
    pt.map1g(0xffff_ffc0_0000_0000n, 0x40000); // 1 GiB page at gfn 0x40000
    expect(translate(KERNEL + 0x5123n, pt.cr3, reader(pt))).toBe(0x777);
    expect(translate(KERNEL + 0x4000_0000n + 0x3_4567n, pt.cr3, reader(pt))).toBe(0x600 + 0x34);
    expect(translate(0xffff_ffc0_0000_0000n + 0x1234_5678n, pt.cr3, reader(pt))).toBe(0x40000 + 0x12345);
    expect(translate(KERNEL + 0x6000n, pt.cr3, reader(pt))).toBeUndefined(); // not present
    expect(translate(KERNEL, 0x99000n, reader(pt))).toBeUndefined(); // no PML4 in the image
  });
});

describe('eagerGfns', () => {
  it('returns the first pages of each vCPU\'s per-CPU area, deduplicated and sorted', () => {
    const pt = new PageTables(0x10, 0x11);
    for (let i = 0; i < 8; i++) pt.map4k(KERNEL + 0x10_0000n + BigInt(i) * 0x1000n, 0x900 - i); // descending gfns
    pt.map2m(KERNEL + 0x20_0000n, 0x400);
    const ctx = hvmContext([
      cpuRecord(0, { cr3: pt.cr3, gsBase: KERNEL + 0x10_0000n }), // kernel GS base
      cpuRecord(1, { cr3: pt.cr3, gsBase: 0x7f00_0000_0000n, shadowGs: KERNEL + 0x20_0123n }), // stopped in user mode
      cpuRecord(2, { cr3: pt.cr3, gsBase: KERNEL + 0x10_2000n }), // overlaps vCPU 0
    ]);
    const gfns = eagerGfns(ctx, reader(pt), 4);
    expect(gfns).toEqual([0x400, 0x401, 0x402, 0x403, 0x8fb, 0x8fc, 0x8fd, 0x8fe, 0x8ff, 0x900].sort((a, b) => a - b));
  });

  it('keeps what it found before a missing table or an unmapped page', () => {
    const pt = new PageTables(0x10, 0x11);
    for (let i = 0; i < 3; i++) pt.map4k(KERNEL + BigInt(i) * 0x1000n, 0x100 + i); // 3 of 128 mapped
    pt.map4k(KERNEL + 0x4000_0000n, 0x200); // its own page-directory page...
    const pd = [...pt.pages.keys()].at(-2)!; // ...the PD allocated for it; drop it from the image
    const broken = (g: number) => (g === pd ? undefined : pt.pages.get(g));
    const ctx = hvmContext([cpuRecord(0, { cr3: pt.cr3, gsBase: KERNEL }), cpuRecord(1, { cr3: pt.cr3, gsBase: KERNEL + 0x4000_0000n })]);
    expect(eagerGfns(ctx, broken, 128)).toEqual([0x100, 0x101, 0x102]);
    expect(eagerGfns(ctx, reader(pt), 128)).toEqual([0x100, 0x101, 0x102, 0x200]);
  });

  it('skips vCPUs that are not in 4-level long mode or have no kernel GS base', () => {
    const pt = new PageTables(0x10, 0x11);
    pt.map4k(KERNEL, 0x100);
    const ctx = hvmContext([
      cpuRecord(0, { cr3: pt.cr3, gsBase: KERNEL, cr0: 0x11n }), // paging off
      cpuRecord(1, { cr3: pt.cr3, gsBase: KERNEL, cr4: 0x1020n }), // LA57
      cpuRecord(2, { cr3: pt.cr3, gsBase: KERNEL, efer: 0x1n }), // not long mode
      cpuRecord(3, { cr3: pt.cr3 }), // offline: no GS base at all
    ]);
    expect(eagerGfns(ctx, reader(pt), 128)).toEqual([]);
    expect(eagerGfns(hvmContext([cpuRecord(4, { cr3: pt.cr3, gsBase: KERNEL })]), reader(pt), 128)).toEqual([0x100]);
  });
});
