// A PV domain's state is libxenguest's migration stream (v2), which already holds page
// tables and the p2m canonicalised to pseudo-physical frames (native/pv_stream.h). The stream
// is cut in two: its page data (one contiguous run of PAGE_DATA records) becomes the memory
// image, everything else (CPU policy, p2m frame list, TSC, shared info, vCPU state) the
// descriptor. Restore splices the run back in where it was.
//   stream: 24-byte image header, 16-byte domain header, records { u32 type, u32 length,
//   body padded to 8 bytes }; PAGE_DATA is type 1, END type 0.
import { closeSync, createReadStream, createWriteStream, openSync, readSync, fstatSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { DescriptorError } from './errors.js';
import { openImageForWrite } from './memory-image.js';

const STREAM_HEADERS = 24 + 16;
const PAGE_DATA = 1;
const END = 0;
const PAGE_SIZE = 4096;

export interface PageDataRun {
  /** byte offset of the first PAGE_DATA record and of the first record after the run */
  start: number;
  end: number;
  /** pages that carry data in the run */
  pages: number;
  /** the stream's total length */
  length: number;
}

/** Finds the PAGE_DATA run of a saved stream, reading only record headers. */
export function findPageDataRun(path: string): PageDataRun {
  const fd = openSync(path, 'r');
  try {
    const length = fstatSync(fd).size;
    const head = Buffer.alloc(STREAM_HEADERS);
    if (readSync(fd, head, 0, STREAM_HEADERS, 0) !== STREAM_HEADERS || head.readBigUInt64LE(0) !== 0xffffffffffffffffn || head.readUInt32BE(8) !== 0x58454e46) {
      throw new DescriptorError(`${path} is not a Xen migration stream`);
    }
    const rec = Buffer.alloc(16);
    let start = -1;
    let end = -1;
    let pages = 0;
    for (let at = STREAM_HEADERS; ;) {
      if (readSync(fd, rec, 0, 16, at) < 8) throw new DescriptorError(`${path}: the stream ends inside a record header at byte ${at}`);
      const type = rec.readUInt32LE(0);
      const bodyLength = rec.readUInt32LE(4);
      const next = at + 8 + Math.ceil(bodyLength / 8) * 8;
      if (next > length) throw new DescriptorError(`${path}: record at byte ${at} runs past the end`);
      if (type === PAGE_DATA) {
        if (end !== -1) throw new DescriptorError(`${path}: page data is not one contiguous run`);
        if (start === -1) start = at;
        const count = rec.readUInt32LE(8);
        pages += (bodyLength - 8 - 8 * count) / PAGE_SIZE;
      } else if (start !== -1 && end === -1) {
        end = at;
      }
      if (type === END) break;
      at = next;
    }
    if (start === -1 || end === -1) throw new DescriptorError(`${path}: the stream has no page data`);
    return { start, end, pages, length };
  } finally {
    closeSync(fd);
  }
}

function readRange(path: string, start: number, end: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(end - start);
    if (readSync(fd, buf, 0, buf.length, start) !== buf.length) throw new DescriptorError(`${path} is shorter than expected`);
    return buf;
  } finally {
    closeSync(fd);
  }
}

export interface SplitStream {
  head: Buffer;
  tail: Buffer;
  pages: number;
  /** bytes of page data written to the image after its header */
  imageBytes: number;
}

/** Writes the memory image (header, then the stream's page data) and returns the rest. */
export async function splitPvStream(streamPath: string, imagePath: string, imageHeader: (pages: number) => Buffer): Promise<SplitStream> {
  const run = findPageDataRun(streamPath);
  const out = createWriteStream('', { fd: openImageForWrite(imagePath) });
  out.write(imageHeader(run.pages));
  await pipeline(createReadStream(streamPath, { start: run.start, end: run.end - 1 }), out);
  return { head: readRange(streamPath, 0, run.start), tail: readRange(streamPath, run.end, run.length), pages: run.pages, imageBytes: run.end - run.start };
}
