// A memory image (lib/descriptor/memory-image.ts) opened for serving: gfn → page index by
// binary search over the memory map, positional reads, and the one scan that finds the
// all-zero pages (a fresh clone page is already zero, so those never need paging out).
import { closeSync, openSync, read, readSync } from 'node:fs';
import { promisify } from 'node:util';
import { IMAGE_HEADER_SIZE } from '../descriptor/memory-image.js';
import type { GfnRange } from '../xen/native.js';

const PAGE = 4096;
const SCAN_PAGES = 256; // 1 MiB per read
const ZERO = Buffer.alloc(PAGE);
const readAsync = promisify(read);

export interface ZeroScan {
  zeroPages: number;
  /** populated gfns whose page is not all zero, coalesced, ascending */
  nonzero: GfnRange[];
}

export class ImageIndex {
  /** first gfn, count and first page index of each memory-map range */
  private readonly starts: number[] = [];
  private readonly counts: number[] = [];
  private readonly bases: number[] = [];
  private fd: number | undefined;
  private inflight = 0;
  private closing = false;
  readonly pages: number;

  constructor(
    readonly path: string,
    memoryMap: readonly GfnRange[],
  ) {
    let index = 0;
    for (const [start, count] of memoryMap) {
      this.starts.push(start);
      this.counts.push(count);
      this.bases.push(index);
      index += count;
    }
    this.pages = index;
    this.fd = openSync(path, 'r');
  }

  /** the page index of gfn in the image, or undefined if the parent had no such page */
  indexOf(gfn: number): number | undefined {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const start = this.starts[mid]!;
      if (gfn < start) hi = mid - 1;
      else if (gfn >= start + this.counts[mid]!) lo = mid + 1;
      else return this.bases[mid]! + (gfn - start);
    }
    return undefined;
  }

  /** Reads the pages at `indices` into `into` from `at`, one read per run of consecutive indices. */
  async readInto(indices: readonly number[], into: Buffer, at: number): Promise<void> {
    for (let i = 0; i < indices.length; ) {
      let n = 1;
      while (i + n < indices.length && indices[i + n] === indices[i]! + n) n++;
      await this.readFully(into, at + i * PAGE, n * PAGE, IMAGE_HEADER_SIZE + indices[i]! * PAGE);
      i += n;
    }
  }

  /** one page by gfn, synchronously (page-table walks at start-up); undefined if not in the image */
  readPageSync(gfn: number): Buffer | undefined {
    const index = this.indexOf(gfn);
    if (index === undefined) return undefined;
    const b = Buffer.alloc(PAGE);
    if (readSync(this.openFd(), b, 0, PAGE, IMAGE_HEADER_SIZE + index * PAGE) !== PAGE) throw new Error(`${this.path}: short read at page ${index}`);
    return b;
  }

  /** Reads every page once; each range's pages are contiguous in the file. */
  async scanZero(): Promise<ZeroScan> {
    const buf = Buffer.alloc(SCAN_PAGES * PAGE);
    const nonzero: GfnRange[] = [];
    let zeroPages = 0;
    for (let r = 0; r < this.starts.length; r++) {
      const start = this.starts[r]!;
      const count = this.counts[r]!;
      for (let off = 0; off < count; off += SCAN_PAGES) {
        const n = Math.min(SCAN_PAGES, count - off);
        await this.readFully(buf, 0, n * PAGE, IMAGE_HEADER_SIZE + (this.bases[r]! + off) * PAGE);
        for (let i = 0; i < n; i++) {
          if (buf.subarray(i * PAGE, (i + 1) * PAGE).equals(ZERO)) {
            zeroPages++;
            continue;
          }
          const gfn = start + off + i;
          const last = nonzero[nonzero.length - 1];
          if (last && last[0] + last[1] === gfn) last[1]++;
          else nonzero.push([gfn, 1]);
        }
      }
    }
    return { zeroPages, nonzero };
  }

  /** Idempotent; waits for reads in flight, so their fd number is never reused under them. */
  close(): void {
    this.closing = true;
    if (this.fd === undefined || this.inflight) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private openFd(): number {
    if (this.fd === undefined || this.closing) throw new Error(`memory image ${this.path} is closed`);
    return this.fd;
  }

  private async readFully(into: Buffer, at: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const fd = this.openFd();
      this.inflight++;
      let bytesRead: number;
      try {
        ({ bytesRead } = await readAsync(fd, into, at + done, length - done, position + done));
      } finally {
        if (--this.inflight === 0 && this.closing) this.close();
      }
      if (bytesRead === 0) throw new Error(`${this.path}: unexpected end of image at byte ${position + done}`);
      done += bytesRead;
    }
  }
}
