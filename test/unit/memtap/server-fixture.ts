// A small parent for the server tests: page tables that map two vCPUs' per-CPU areas, zero
// pages, special pages, and the evict/eager sets the server should derive, worked out here.
import { MemServer, type MemServerOptions } from '../../../lib/memtap/server.js';
import type { GfnRange } from '../../../lib/xen/native.js';
import { PageTables, cpuRecord, hvmContext, makeFixture, type Fixture } from './helpers.js';

export const KERNEL = 0xffff_8880_0000_0000n;

export interface ServerFixture extends Fixture {
  eager: number[];
  evict: GfnRange[];
  zero: number[];
}

export function serverFixture(): ServerFixture {
  const memoryMap: GfnRange[] = [[0, 64], [0x100, 200], [0x1000, 16], [0xfeffc, 1], [0xfefff, 1]];
  const pt = new PageTables(0x10, 0x11);
  for (let i = 0; i < 4; i++) pt.map4k(KERNEL + 0x10_0000n + BigInt(i) * 0x1000n, 0x120 + i);
  for (let i = 0; i < 4; i++) pt.map4k(KERNEL + 0x20_0000n + BigInt(i) * 0x1000n, 0x1000 + i);
  const zero = [...Array.from({ length: 16 }, (_, i) => 0x20 + i), 0x150, 0x1002, ...Array.from({ length: 8 }, (_, i) => 0x1008 + i)];
  const ctx = hvmContext([cpuRecord(0, { cr3: pt.cr3, gsBase: KERNEL + 0x10_0000n }), cpuRecord(1, { cr3: pt.cr3, gsBase: KERNEL + 0x20_0000n })]);
  const fx = makeFixture({
    memoryMap, zero, content: pt.pages, hvmContext: ctx,
    specialGfns: [[1, 0xfeffc], [17, 0xfefff]],
    params: [[1, 0xfeffcn], [17, 0xfefffn], [12, 0x30n << 12n], [2, 1n]],
  });
  // worked out independently of the server: per-CPU pages minus the zero one; the rest minus specials
  const eager = [0x120, 0x121, 0x122, 0x123, 0x1000, 0x1001, 0x1003];
  const keep = new Set([...zero, ...eager, 0xfeffc, 0xfefff, 0x30]);
  const evict: GfnRange[] = [];
  for (const g of fx.gfns) {
    if (keep.has(g)) continue;
    const last = evict.at(-1);
    if (last && last[0] + last[1] === g) last[1]++;
    else evict.push([g, 1]);
  }
  return { ...fx, eager, evict, zero };
}

export function startServer(fx: Fixture, o: Partial<MemServerOptions> = {}): MemServer {
  return new MemServer({ descriptor: fx.descriptor, imagePath: fx.imagePath, token: fx.token, host: '127.0.0.1', port: 0, clones: 2, eagerPagesPerCpu: 4, ...o });
}
