// Cutting a PV migration stream into descriptor and memory image, on synthetic streams laid
// out as libxenguest writes them; and the PV descriptor's round trip through the file format.
import { afterAll, describe, expect, it } from 'vitest';
import { chmodSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findPageDataRun, splitPvStream } from '../../lib/descriptor/pv-stream.js';
import { decodeDescriptor, encodeDescriptor } from '../../lib/descriptor/format.js';
import { DescriptorError } from '../../lib/descriptor/errors.js';
import { sampleDescriptor } from '../fixtures/descriptor.js';

const dir = mkdtempSync(join(tmpdir(), 'sf-pvstream-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function record(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(body.length, 4);
  return Buffer.concat([h, body, Buffer.alloc((8 - (body.length % 8)) % 8)]);
}

/** PAGE_DATA: count pfns, the first `withData` of them with a page each (the rest XTAB). */
function pageData(firstPfn: number, count: number, withData: number): Buffer {
  const head = Buffer.alloc(8 + 8 * count);
  head.writeUInt32LE(count, 0);
  for (let i = 0; i < count; i++) head.writeBigUInt64LE(BigInt(firstPfn + i) | (i < withData ? 0n : 0xfn << 60n), 8 + 8 * i);
  return record(1, Buffer.concat([head, Buffer.alloc(4096 * withData, firstPfn + 1)]));
}

function stream(parts: Buffer[]): Buffer {
  const ihdr = Buffer.alloc(24);
  ihdr.writeBigUInt64LE(0xffffffffffffffffn, 0);
  ihdr.writeUInt32BE(0x58454e46, 8);
  ihdr.writeUInt32BE(3, 12);
  const dhdr = Buffer.alloc(16);
  dhdr.writeUInt32LE(1, 0);
  return Buffer.concat([ihdr, dhdr, ...parts]);
}

const info = record(2, Buffer.from([8, 4, 0, 0, 0, 0, 0, 0]));
const p2m = record(3, Buffer.alloc(8 + 8 * 2));
const tail = [record(8, Buffer.alloc(24)), record(7, Buffer.alloc(4096)), record(4, Buffer.alloc(5000)), record(0, Buffer.alloc(0))];

describe('PV migration stream', () => {
  it('finds the page data run and cuts the stream around it; head + image + tail is the stream', async () => {
    const pages = [pageData(0, 4, 3), pageData(4, 2, 2)];
    const s = stream([info, p2m, ...pages, ...tail]);
    const path = join(dir, 'a.stream');
    writeFileSync(path, s);
    const run = findPageDataRun(path);
    expect(run.pages).toBe(5);
    expect(run.end - run.start).toBe(pages[0]!.length + pages[1]!.length);
    const img = join(dir, 'a.mem');
    const split = await splitPvStream(path, img, (n) => Buffer.from(`header for ${n} pages`));
    const image = readFileSync(img);
    expect(image.subarray(0, 18).toString()).toBe('header for 5 pages');
    expect(Buffer.concat([split.head, image.subarray(image.length - split.imageBytes), split.tail]).equals(s)).toBe(true);
  });

  // The image is the guest's whole memory: only its owner may read it, and a symbolic link
  // planted at its path must not send it (or the truncation) elsewhere.
  it('writes the image 0600, also over an older file, and never through a symbolic link', async () => {
    const path = join(dir, 'm.stream');
    writeFileSync(path, stream([info, p2m, pageData(0, 2, 2), ...tail]));
    const img = join(dir, 'm.mem');
    await splitPvStream(path, img, () => Buffer.from('h'));
    expect(statSync(img).mode & 0o777).toBe(0o600);
    chmodSync(img, 0o644);
    await splitPvStream(path, img, () => Buffer.from('h'));
    expect(statSync(img).mode & 0o777).toBe(0o600);
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'keep me');
    const planted = join(dir, 'planted.mem');
    symlinkSync(victim, planted);
    await expect(splitPvStream(path, planted, () => Buffer.from('h'))).rejects.toThrow(/symbolic link/);
    expect(readFileSync(victim, 'utf8')).toBe('keep me');
    expect(lstatSync(planted).isSymbolicLink()).toBe(true);
  });

  it('names what is wrong with a stream it cannot cut', () => {
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('not a stream at all, clearly not one........'), /not a Xen migration stream/],
      [stream([info, p2m, ...tail]), /no page data/],
      [stream([info, pageData(0, 1, 1), p2m, pageData(1, 1, 1), ...tail]), /not one contiguous run/],
      [stream([info, pageData(0, 2, 2)]).subarray(0, 200), /runs past the end/],
    ];
    for (const [bytes, message] of cases) {
      const path = join(dir, 'bad.stream');
      writeFileSync(path, bytes);
      expect(() => findPageDataRun(path)).toThrow(DescriptorError);
      expect(() => findPageDataRun(path)).toThrow(message);
    }
  });

  it('a PV descriptor round-trips its stream; one without it is refused', () => {
    const d = sampleDescriptor();
    d.meta.source.type = 'pv';
    d.meta.memory = { pages: 5, imageId: 'ab'.repeat(16), imageBytes: 20_560 };
    d.pvStream = { head: stream([info, p2m]), tail: Buffer.concat(tail) };
    const back = decodeDescriptor(encodeDescriptor(d));
    expect(back.pvStream!.head.equals(d.pvStream.head)).toBe(true);
    expect(back.pvStream!.tail.equals(d.pvStream.tail)).toBe(true);
    delete d.pvStream;
    expect(() => decodeDescriptor(encodeDescriptor(d), 'f.sfd')).toThrow(/PV descriptor without its migration stream/);
  });
});
