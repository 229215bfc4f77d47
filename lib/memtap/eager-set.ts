// Pages a clone must have before it first runs. On resume Linux re-registers each vCPU's
// vcpu_info, which lives in the kernel's per-CPU area; Xen maps that page synchronously and
// fails on a paged-out frame, and the kernel panics ("register_vcpu_info failed"). So for
// every vCPU we find its per-CPU area (GS base) and translate its first pages to gfns with
// the guest's own page tables, read from the memory image.

/** a page of the image by gfn, or undefined when the parent had no such page */
export type PageReader = (gfn: number) => Buffer | undefined;

export interface CpuPaging {
  vcpu: number;
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
  gsBase: bigint;
  shadowGs: bigint;
}

const HVM_END = 0;
const HVM_CPU = 2;
// struct hvm_hw_cpu (xen/include/public/arch-x86/hvm/save.h) byte offsets
const OFF = { cr0: 656, cr3: 672, cr4: 680, gsBase: 840, shadowGs: 944, efer: 992 } as const;
const CPU_MIN_BYTES = OFF.efer + 8;

const ADDR_MASK = 0x000f_ffff_ffff_f000n;
const PRESENT = 1n;
const PAGE_SIZE_BIT = 0x80n; // PS: a 1 GiB (PDPTE) or 2 MiB (PDE) page

/** The CPU records of an xc_domain_hvm_getcontext blob; stops quietly at a truncated record. */
export function cpuRecords(ctx: Buffer): CpuPaging[] {
  const out: CpuPaging[] = [];
  for (let at = 0; at + 8 <= ctx.length; ) {
    const type = ctx.readUInt16LE(at);
    const instance = ctx.readUInt16LE(at + 2);
    const length = ctx.readUInt32LE(at + 4);
    const body = at + 8;
    if (type === HVM_END || body + length > ctx.length) break;
    if (type === HVM_CPU && length >= CPU_MIN_BYTES) {
      const u64 = (off: number) => ctx.readBigUInt64LE(body + off);
      out.push({
        vcpu: instance, cr0: u64(OFF.cr0), cr3: u64(OFF.cr3), cr4: u64(OFF.cr4),
        efer: u64(OFF.efer), gsBase: u64(OFF.gsBase), shadowGs: u64(OFF.shadowGs),
      });
    }
    at = body + length;
  }
  return out;
}

/** 4-level paging only: PG, PAE and LMA set, LA57 clear. */
export function inLongMode(c: CpuPaging): boolean {
  return (c.cr0 & (1n << 31n)) !== 0n && (c.cr4 & (1n << 5n)) !== 0n && (c.cr4 & (1n << 12n)) === 0n && (c.efer & (1n << 10n)) !== 0n;
}

const isKernel = (va: bigint) => va >> 47n !== 0n;

/** The per-CPU area's address: GS base in the kernel, the swapped-out one if we stopped in user mode. */
export function perCpuAddress(c: CpuPaging): bigint | undefined {
  const va = isKernel(c.gsBase) ? c.gsBase : c.shadowGs;
  return isKernel(va) ? va : undefined;
}

/** Translates a virtual address to a gfn, or undefined at the first missing table or non-present entry. */
export function translate(va: bigint, cr3: bigint, table: PageReader): number | undefined {
  let next = cr3 & ADDR_MASK;
  for (let level = 4; level >= 1; level--) {
    const page = table(Number(next >> 12n));
    if (!page) return undefined;
    const shift = BigInt(12 + 9 * (level - 1));
    const entry = page.readBigUInt64LE(Number((va >> shift) & 0x1ffn) * 8);
    if ((entry & PRESENT) === 0n) return undefined;
    if ((level === 3 || level === 2) && (entry & PAGE_SIZE_BIT) !== 0n) {
      const offsetMask = (1n << shift) - 1n; // also drops the large page's PAT bit (12)
      return Number(((entry & ADDR_MASK & ~offsetMask) | (va & offsetMask)) >> 12n);
    }
    next = entry & ADDR_MASK;
  }
  return Number(next >> 12n);
}

/**
 * The gfns of the first `pagesPerCpu` pages of every vCPU's per-CPU area, ascending, no
 * duplicates. A vCPU whose walk fails contributes the pages found before the failure.
 */
export function eagerGfns(hvmContext: Buffer, readPage: PageReader, pagesPerCpu = 128): number[] {
  const tables = new Map<number, Buffer | undefined>();
  const table: PageReader = (gfn) => {
    if (!tables.has(gfn)) tables.set(gfn, readPage(gfn));
    return tables.get(gfn);
  };
  const found = new Set<number>();
  for (const cpu of cpuRecords(hvmContext)) {
    const base = perCpuAddress(cpu);
    if (base === undefined || !inLongMode(cpu)) continue;
    const first = base & ~0xfffn;
    for (let i = 0; i < pagesPerCpu; i++) {
      const gfn = translate(first + BigInt(i) * 4096n, cpu.cr3, table);
      if (gfn === undefined) break;
      found.add(gfn);
    }
  }
  return [...found].sort((a, b) => a - b);
}
