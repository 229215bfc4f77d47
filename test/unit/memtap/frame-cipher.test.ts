// The addon's FrameCipher (native/gcm_frames.cc), which seals and opens the memserver's frames:
// the same bytes as AES-256-GCM by node:crypto with the layout of secure.ts (so either end may
// use either), one nonce per frame and never the same one twice, in place or not.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Opener, Sealer, TAG_BYTES } from '../../../lib/memtap/secure.js';
import { loadAddon } from '../../../lib/xen/native.js';

const key = randomBytes(32);
const nonce = (n: number) => {
  const b = Buffer.alloc(12);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
/** protocol.ts's frame: u32 length (type + payload), type, payload */
const frame = (type: number, payload: Buffer) => {
  const b = Buffer.alloc(5 + payload.length);
  b.writeUInt32LE(1 + payload.length);
  b[4] = type;
  payload.copy(b, 5);
  return b;
};

/** What secure.ts specifies, by node:crypto: length field (body + tag) as AAD, nonce = counter. */
function reference(f: Buffer, counter: number): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32LE(f.length - 4 + TAG_BYTES);
  const c = createCipheriv('aes-256-gcm', key, nonce(counter));
  c.setAAD(head);
  const body = Buffer.concat([c.update(f.subarray(4)), c.final()]);
  return Buffer.concat([head, body, c.getAuthTag()]);
}

describe('FrameCipher', () => {
  it('seals as node:crypto does, frame after frame, each under the next counter', () => {
    const s = new Sealer(key);
    const frames = [frame(3, randomBytes(12)), frame(4, randomBytes(4096 + 12)), frame(4, randomBytes(64 * 4104 + 4)), frame(6, Buffer.alloc(4))];
    frames.forEach((f, i) => expect(s.seal(f).equals(reference(f, i))).toBe(true));
    // The same frame again is sealed under a new nonce.
    expect(s.seal(frames[0]!).equals(reference(frames[0]!, 0))).toBe(false);
  });

  it('seals in place into the room after a frame, the same bytes', () => {
    const s = new Sealer(key);
    const f = frame(4, randomBytes(4096 + 12));
    const room = Buffer.concat([f, Buffer.alloc(TAG_BYTES)]);
    expect(s.sealInPlace(room)).toBe(room);
    expect(room.equals(reference(f, 0))).toBe(true);
  });

  it('opens what node:crypto sealed, in order; a flipped bit, a replay or a skipped frame does not open', () => {
    const frames = Array.from({ length: 5 }, (_, i) => frame(4, randomBytes(100 * i + 1)));
    const wire = frames.map((f, i) => reference(f, i).subarray(4));
    const o = new Opener(key);
    for (let i = 0; i < 3; i++) {
      const got = o.open(wire[i]!)!;
      expect(got.type).toBe(4);
      expect(got.payload.equals(frames[i]!.subarray(5))).toBe(true);
    }
    expect(wire[2]!.equals(reference(frames[2]!, 2).subarray(4))).toBe(true); // the record is left as it came
    const flipped = Buffer.from(wire[3]!);
    const at = flipped.length - 20;
    flipped[at] = flipped[at]! ^ 1;
    expect(o.open(flipped)).toBeNull();
    expect(o.open(wire[3]!)).toBeNull(); // that frame's counter is spent
    const p = new Opener(key);
    expect(p.open(wire[0]!)).not.toBeNull();
    expect(p.open(wire[0]!)).toBeNull(); // a replay
    expect(new Opener(key).open(wire[1]!)).toBeNull(); // frame 0 skipped
  });

  it('what the Sealer seals, node:crypto opens under the same counters', () => {
    const s = new Sealer(key);
    for (let i = 0; i < 3; i++) {
      const f = frame(3, randomBytes(20 + i));
      const sealed = s.seal(f);
      const d = createDecipheriv('aes-256-gcm', key, nonce(i));
      d.setAAD(sealed.subarray(0, 4));
      d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      expect(Buffer.concat([d.update(sealed.subarray(4, sealed.length - TAG_BYTES)), d.final()]).equals(f.subarray(4))).toBe(true);
    }
  });

  it('refuses a wrong key length, a direction it was not made for, and an out that does not fit', () => {
    const { FrameCipher } = loadAddon();
    expect(() => new FrameCipher(Buffer.alloc(16), 'seal')).toThrow(/32 bytes/);
    expect(() => new FrameCipher(key, 'both' as 'seal')).toThrow(/direction/);
    const sealer = new FrameCipher(key, 'seal');
    const f = frame(3, Buffer.alloc(8));
    expect(() => sealer.seal(f, Buffer.alloc(f.length))).toThrow(RangeError);
    const big = Buffer.alloc(64);
    expect(() => sealer.seal(big.subarray(8, 8 + 20), big.subarray(4, 4 + 36))).toThrow(/overlaps/);
    expect(sealer.open(Buffer.alloc(32), Buffer.alloc(16))).toBe(false); // an opener's job
    expect(() => new FrameCipher(key, 'open').seal(f, Buffer.alloc(f.length + TAG_BYTES))).toThrow(/failed/);
  });
});
