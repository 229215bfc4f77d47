// Synthetic memory images, HVM contexts and page tables for the memtap tests.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeDescriptor, type Descriptor } from '../../../lib/descriptor/format.js';
import { imageHeader } from '../../../lib/descriptor/memory-image.js';
import type { GfnRange } from '../../../lib/xen/native.js';
import { sampleDescriptor } from '../../fixtures/descriptor.js';

export const PAGE = 4096;

/** A page that names its gfn in every byte pattern, so a mixed-up page shows. */
export function patternPage(gfn: number): Buffer {
  const b = Buffer.alloc(PAGE);
  for (let i = 0; i < PAGE; i += 4) b.writeUInt32LE((gfn * 2654435761 + i) >>> 0, i);
  b.writeUInt32LE(gfn, 0); // never all zero
  return b;
}

/** One `struct hvm_save_descriptor` + body. */
export function saveRecord(type: number, instance: number, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(type, 0);
  h.writeUInt16LE(instance, 2);
  h.writeUInt32LE(body.length, 4);
  return Buffer.concat([h, body]);
}

export interface CpuRegs {
  cr3: bigint;
  gsBase?: bigint;
  shadowGs?: bigint;
  cr0?: bigint;
  cr4?: bigint;
  efer?: bigint;
}

/** An hvm_hw_cpu record (1032 bytes) in 64-bit long mode unless told otherwise. */
export function cpuRecord(vcpu: number, r: CpuRegs): Buffer {
  const b = Buffer.alloc(1032);
  b.writeBigUInt64LE(r.cr0 ?? 0x8005_0033n, 656);
  b.writeBigUInt64LE(r.cr3, 672);
  b.writeBigUInt64LE(r.cr4 ?? 0x0000_06f0n, 680);
  b.writeBigUInt64LE(r.gsBase ?? 0n, 840);
  b.writeBigUInt64LE(r.shadowGs ?? 0n, 944);
  b.writeBigUInt64LE(r.efer ?? 0xd01n, 992);
  return saveRecord(2, vcpu, b);
}

/** A context as xc_domain_hvm_getcontext lays it out: header record, the records, END. */
export function hvmContext(records: Buffer[]): Buffer {
  return Buffer.concat([saveRecord(1, 0, Buffer.alloc(24, 0x11)), saveRecord(3, 0, Buffer.alloc(40, 0x22)), ...records, saveRecord(0, 0, Buffer.alloc(0))]);
}

/** Builds x86-64 4-level page tables in a map of gfn → page. */
export class PageTables {
  readonly pages = new Map<number, Buffer>();
  constructor(
    readonly pml4: number,
    private nextTable: number,
  ) {
    this.pages.set(pml4, Buffer.alloc(PAGE));
  }

  get cr3(): bigint {
    return BigInt(this.pml4) << 12n;
  }

  map4k(va: bigint, gfn: number): void {
    this.entry(this.table(this.table(this.table(this.pml4, va, 39n), va, 30n), va, 21n), va, 12n, (BigInt(gfn) << 12n) | 0x63n);
  }

  map2m(va: bigint, gfn: number): void {
    // bit 12 (PAT) set on purpose: it is not an address bit in a large page
    this.entry(this.table(this.table(this.pml4, va, 39n), va, 30n), va, 21n, (BigInt(gfn) << 12n) | 0x10e3n);
  }

  map1g(va: bigint, gfn: number): void {
    this.entry(this.table(this.pml4, va, 39n), va, 30n, (BigInt(gfn) << 12n) | 0x10e3n);
  }

  /** the gfn of the table an entry at `shift` points to, created if missing */
  private table(at: number, va: bigint, shift: bigint): number {
    const page = this.pages.get(at)!;
    const i = Number((va >> shift) & 0x1ffn) * 8;
    const e = page.readBigUInt64LE(i);
    if (e & 1n) return Number((e & 0x000f_ffff_ffff_f000n) >> 12n);
    const gfn = this.nextTable++;
    this.pages.set(gfn, Buffer.alloc(PAGE));
    page.writeBigUInt64LE((BigInt(gfn) << 12n) | 0x63n, i);
    return gfn;
  }

  private entry(at: number, va: bigint, shift: bigint, value: bigint): void {
    this.pages.get(at)!.writeBigUInt64LE(value, Number((va >> shift) & 0x1ffn) * 8);
  }
}

export interface Fixture {
  dir: string;
  descriptor: Descriptor;
  descriptorPath: string;
  imagePath: string;
  tokenFile: string;
  token: Buffer;
  /** what the image holds for each populated gfn */
  page(gfn: number): Buffer;
  gfns: number[];
}

export interface FixtureOptions {
  memoryMap: GfnRange[];
  /** populated gfns whose page is all zero */
  zero?: Iterable<number>;
  /** pages with given content (page tables) */
  content?: Map<number, Buffer>;
  hvmContext?: Buffer;
  params?: [number, bigint][];
  specialGfns?: [number, number][]; // [param, gfn]
}

/** Writes a descriptor, its memory image and a token file into a fresh temp dir. */
export function makeFixture(o: FixtureOptions): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'sf-memtap-'));
  const zero = new Set(o.zero ?? []);
  const gfns = o.memoryMap.flatMap(([s, c]) => Array.from({ length: c }, (_, i) => s + i));
  const page = (g: number) => o.content?.get(g) ?? (zero.has(g) ? Buffer.alloc(PAGE) : patternPage(g));
  const base = sampleDescriptor();
  const special = o.specialGfns ?? [];
  const descriptor: Descriptor = {
    ...base,
    meta: { ...base.meta, memory: { pages: gfns.length, imageId: '5a'.repeat(16) } },
    hvmContext: o.hvmContext ?? hvmContext([]),
    params: o.params ?? special.map(([p, g]) => [p, BigInt(g)]),
    memoryMap: o.memoryMap,
    specialPages: special.map(([param, gfn]) => ({ param, gfn, data: page(gfn) })),
  };
  const descriptorPath = join(dir, 'parent.sfd');
  const imagePath = join(dir, 'parent.mem');
  const tokenFile = join(dir, 'token');
  const token = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) token[i] = (i * 37 + 11) & 0xff;
  writeFileSync(descriptorPath, encodeDescriptor(descriptor));
  writeFileSync(imagePath, Buffer.concat([imageHeader(descriptor.meta.memory.imageId!, gfns.length), ...gfns.map(page)]));
  writeFileSync(tokenFile, token.toString('hex') + '\n', { mode: 0o600 });
  return { dir, descriptor, descriptorPath, imagePath, tokenFile, token, page, gfns };
}
