import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode, FrameReader, MAGIC, MAX_FRAME, MAX_GET, MAX_REPLY_FRAME, MsgType, ProtocolError, decodeBye, decodeEcho, decodeError, decodeGet, decodeHello, decodeChallenge, decodeProof,
  decodePages, decodeWelcome, encodeBye, encodeError, encodeGet, encodeHello, encodePages, encodePing, encodePong, encodeWelcome,
} from '../../../lib/memtap/protocol.js';

const token = Buffer.alloc(32, 0xab);
const one = (b: Buffer) => {
  const frames = new FrameReader().push(b);
  expect(frames).toHaveLength(1);
  return frames[0]!;
};
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return (e as ProtocolError).code;
  }
  throw new Error('did not throw');
};

describe('memtap protocol encoding', () => {
  it('lays HELLO out byte for byte as the C++ client does', () => {
    const b = encodeHello({ nonce: token, vmid: 0x01020304 });
    expect(b.length).toBe(4 + 1 + 48);
    expect(b.readUInt32LE(0)).toBe(49);
    expect(b[4]).toBe(MsgType.Hello);
    expect(b.subarray(5, 13).toString('latin1')).toBe('SFMTAP01');
    expect(b.readUInt32LE(13)).toBe(2);
    expect(b.readUInt32LE(17)).toBe(0x01020304);
    expect(b.subarray(21, 53).equals(token)).toBe(true);
    const f = one(b);
    expect(decodeHello(f.payload)).toEqual({ nonce: token, vmid: 0x01020304 });
  });

  it('round-trips WELCOME with large gfns', () => {
    const w = { pages: 123456, imageId: Buffer.alloc(16, 0x5a), evict: [[0, 10], [2 ** 40, 3]] as [number, number][], eager: [7, 2 ** 36 + 1] };
    const b = encodeWelcome(w);
    expect(b.length).toBe(5 + 8 + 16 + 4 + 2 * 16 + 4 + 2 * 8);
    expect(decodeWelcome(one(b).payload)).toEqual(w);
  });

  it('round-trips GET, PAGES, ERROR, BYE, PING and PONG', () => {
    expect(decodeGet(one(encodeGet([1, 2, 0xfffff])).payload)).toEqual([1, 2, 0xfffff]);
    const data = Buffer.alloc(2 * 4096);
    data.fill(1, 0, 4096).fill(2, 4096);
    const pages = decodePages(one(encodePages([5, 9], data)).payload);
    expect(pages.gfns).toEqual([5, 9]);
    expect(pages.data.equals(data)).toBe(true);
    const err = one(encodeError(ErrorCode.UnknownGfn, 'unknown gfn 0x1f'));
    expect(err.type).toBe(MsgType.Error);
    expect(decodeError(err.payload)).toEqual({ code: 3, message: 'unknown gfn 0x1f' });
    expect(decodeBye(one(encodeBye(42)).payload)).toBe(42);
    const ping = one(encodePing(99, Buffer.from('hi')));
    expect(ping.type).toBe(MsgType.Ping);
    expect(decodeEcho(ping.payload)).toEqual({ nonce: 99, payload: Buffer.from('hi') });
    expect(one(encodePong(99, Buffer.from('hi'))).type).toBe(MsgType.Pong);
  });

  it('refuses malformed payloads with the code the server answers', () => {
    const hello = encodeHello({ nonce: token, vmid: 1 }).subarray(5);
    expect(code(() => decodeHello(hello.subarray(0, 47)))).toBe(ErrorCode.Malformed);
    const badMagic = Buffer.from(hello);
    badMagic[0] = 0x58;
    expect(code(() => decodeHello(badMagic))).toBe(ErrorCode.BadMagic);
    expect(code(() => decodeHello(encodeHello({ nonce: token, vmid: 1 }, MAGIC, 3).subarray(5)))).toBe(ErrorCode.BadMagic);
    // a version-1 HELLO (magic, version 1, the raw key, vmid) is named as such, not as malformed
    const v1 = Buffer.concat([MAGIC, Buffer.from([1, 0, 0, 0]), token, Buffer.from([1, 0, 0, 0])]);
    expect(() => decodeHello(v1)).toThrow(/protocol version 1 is not supported \(server speaks 2\)/);
    expect(code(() => decodeChallenge(Buffer.from([1, 0, 0, 0])))).toBe(ErrorCode.BadMagic);
    expect(code(() => decodeChallenge(Buffer.from([2, 0, 0, 0])))).toBe(ErrorCode.Malformed);
    expect(code(() => decodeProof(Buffer.alloc(31)))).toBe(ErrorCode.Malformed);
    const get = (n: number, gfns: number) => {
      const p = Buffer.alloc(4 + gfns * 8);
      p.writeUInt32LE(n, 0);
      return p;
    };
    expect(code(() => decodeGet(get(MAX_GET + 1, MAX_GET + 1)))).toBe(ErrorCode.TooManyGfns);
    expect(code(() => decodeGet(get(0, 0)))).toBe(ErrorCode.Malformed);
    expect(code(() => decodeGet(get(3, 2)))).toBe(ErrorCode.Malformed);
    expect(code(() => decodeGet(Buffer.alloc(2)))).toBe(ErrorCode.Malformed);
    const huge = get(1, 1);
    huge.writeBigUInt64LE(0xffff_ffff_ffff_fff0n, 4);
    expect(code(() => decodeGet(huge))).toBe(ErrorCode.UnknownGfn);
    expect(code(() => decodeBye(Buffer.alloc(5)))).toBe(ErrorCode.Malformed);
    expect(code(() => decodeEcho(Buffer.alloc(4 + 4097)))).toBe(ErrorCode.Malformed);
    expect(decodeEcho(Buffer.alloc(4 + 4096)).payload.length).toBe(4096);
  });
});

describe('FrameReader', () => {
  const frames = [encodeHello({ nonce: token, vmid: 3 }), encodeGet([1, 2, 3]), encodePages([4], Buffer.alloc(4096, 4)), encodeBye(3), encodePing(1)];
  const stream = Buffer.concat(frames);
  // type, length and hash: deep-comparing 4 KiB buffers thousands of times is slow
  const sum = (fs: { type: number; payload: Buffer }[]) => fs.map((f) => `${f.type}:${f.payload.length}:${createHash('sha1').update(f.payload).digest('hex')}`);
  const expected = sum(frames.map((f) => ({ type: f[4]!, payload: f.subarray(5) })));

  it('reassembles frames split at every possible byte', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new FrameReader();
      const got = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))];
      expect(sum(got)).toEqual(expected);
      expect(r.buffered).toBe(0);
    }
  });

  it('reassembles byte-by-byte and coalesced chunks', () => {
    const r = new FrameReader();
    const got = [];
    for (let i = 0; i < stream.length; i++) got.push(...r.push(stream.subarray(i, i + 1)));
    expect(sum(got)).toEqual(expected);
    expect(sum(new FrameReader().push(Buffer.concat([stream, stream])))).toEqual([...expected, ...expected]);
  });

  it('reassembles random chunkings', () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    for (let round = 0; round < 200; round++) {
      const r = new FrameReader();
      const got = [];
      for (let at = 0; at < stream.length; ) {
        const n = 1 + rand(3000);
        got.push(...r.push(stream.subarray(at, at + n)));
        at += n;
      }
      expect(sum(got)).toEqual(expected);
    }
  });

  it('stops at a zero-length or oversized frame, keeping the frames before it', () => {
    const zero = new FrameReader();
    expect(sum(zero.push(Buffer.concat([frames[1]!, Buffer.alloc(4), frames[3]!])))).toEqual([expected[1]]);
    expect(zero.error?.code).toBe(ErrorCode.Malformed);
    expect(zero.push(frames[3]!)).toEqual([]); // out of step for good
    const big = Buffer.alloc(4);
    big.writeUInt32LE(MAX_FRAME + 1, 0);
    const r = new FrameReader();
    expect(r.push(big)).toEqual([]);
    expect(r.error?.message).toMatch(/bad frame length/);
    const max = Buffer.alloc(5);
    max.writeUInt32LE(MAX_FRAME, 0);
    const ok = new FrameReader();
    expect(ok.push(max)).toEqual([]); // legal: waits for the rest
    expect(ok.error).toBeUndefined();
    const reply = Buffer.alloc(4);
    reply.writeUInt32LE(MAX_REPLY_FRAME, 0);
    expect(new FrameReader(MAX_REPLY_FRAME).push(reply)).toEqual([]);
    expect(encodePages(Array.from({ length: MAX_GET }, (_, i) => i), Buffer.alloc(MAX_GET * 4096)).readUInt32LE(0)).toBe(MAX_REPLY_FRAME);
  });
});
