import { describe, expect, it } from 'vitest';
import {
  BLOCK_OVERHEAD_BYTES, DropReason, HEADER_BYTES, MAC_BYTES, MAGIC, MessageType, REQUEST_BODY_BYTES, VERSION, decode, encodeBlock,
  encodeRequest, frameLength, seqAtOrAfter,
} from '../../../lib/mcdist/wire.js';
import { keysOf, testSession } from './helpers.js';

const session = testSession({ id: '0123456789abcdef', blockCount: 100 });
const keys = keysOf(session);
const join = (parts: Buffer[]): Buffer => Buffer.concat(parts);

describe('wire format v3', () => {
  it('lays out the header as documented', () => {
    const data = Buffer.from('hello');
    const buf = join(encodeBlock(keys, 42, 7, data));
    expect(buf.length).toBe(BLOCK_OVERHEAD_BYTES + data.length);
    expect(buf.readUInt16BE(0)).toBe(MAGIC);
    expect(buf.readUInt8(2)).toBe(VERSION);
    expect(buf.readUInt8(3)).toBe(MessageType.Block);
    expect(buf.subarray(4, 12).toString('hex')).toBe('0123456789abcdef');
    expect(buf.readUInt32BE(12)).toBe(42);
    expect(buf.readUInt32BE(16)).toBe(7);
    expect(buf.readUInt32BE(20)).toBe(12 + 5); // nonce, then the sealed block
    expect(buf.includes(data)).toBe(false); // the block is not in clear
    expect(frameLength(buf)).toBe(buf.length);
  });

  it('round-trips a block', () => {
    const data = Buffer.alloc(4096, 0xab);
    const r = decode(join(encodeBlock(keys, 99, 123456, data)), keys, 100);
    expect(r).toEqual({ ok: true, msg: { type: MessageType.Block, index: 99, seq: 123456, data, nonce: expect.any(Buffer) } });
  });

  it('accepts a short last block but not one longer than the block size', () => {
    expect(decode(join(encodeBlock(keys, 1, 1, Buffer.alloc(10))), keys, 100).ok).toBe(true);
    expect(decode(join(encodeBlock(keys, 1, 1, Buffer.alloc(4097))), keys, 100))
      .toEqual({ ok: false, reason: DropReason.BadLength });
  });

  it('round-trips a request', () => {
    const req = { index: 5, seenSeq: 900, firstSeq: 3, clientId: 0xdeadbeef, rxRateKiBps: 12345, attempt: 2, quietMs: 77, counter: 0x12345678 };
    const buf = join(encodeRequest(keys, req));
    expect(buf.length).toBe(HEADER_BYTES + REQUEST_BODY_BYTES + MAC_BYTES);
    expect(decode(buf, keys, 100)).toEqual({ ok: true, msg: { type: MessageType.Request, ...req } });
  });

  it('clamps request fields that do not fit', () => {
    const buf = join(encodeRequest(keys, {
      index: 0, seenSeq: 0, firstSeq: 0, clientId: 1, rxRateKiBps: 1e12, attempt: 1e6, quietMs: 1e9, counter: 1,
    }));
    const r = decode(buf, keys, 100);
    expect(r.ok && r.msg.type === MessageType.Request && r.msg).toMatchObject({
      rxRateKiBps: 0xffffffff, attempt: 0xffff, quietMs: 0xffff,
    });
  });

  it('names the reason for every kind of bad datagram', () => {
    const good = join(encodeBlock(keys, 3, 1, Buffer.alloc(64, 1)));
    const mutate = (f: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(good);
      f(b);
      return b;
    };
    const other = keysOf(testSession({ id: 'fedcba9876543210', blockCount: 100 }));
    const cases: [Buffer, DropReason][] = [
      [Buffer.alloc(0), DropReason.Truncated],
      [good.subarray(0, HEADER_BYTES + MAC_BYTES - 1), DropReason.Truncated],
      [good.subarray(0, good.length - 1), DropReason.Truncated],
      [Buffer.concat([good, Buffer.alloc(1)]), DropReason.BadLength],
      [mutate((b) => b.writeUInt16BE(0x1234, 0)), DropReason.BadMagic],
      [mutate((b) => b.writeUInt8(1, 2)), DropReason.BadVersion], // version 1 requests had no number
      [mutate((b) => b.writeUInt8(2, 2)), DropReason.BadVersion], // version 2 blocks were in clear
      [mutate((b) => b.writeUInt8(9, 3)), DropReason.BadType],
      [mutate((b) => { b[11]! ^= 1; }), DropReason.WrongSession],
      [mutate((b) => { b[30]! ^= 1; }), DropReason.BadMac],
      [mutate((b) => { b[b.length - 1]! ^= 1; }), DropReason.BadMac],
      [mutate((b) => b.writeUInt32BE(4, 12)), DropReason.BadMac], // index is covered by the tag
      [mutate((b) => { b[HEADER_BYTES]! ^= 1; }), DropReason.BadMac], // so is the nonce
      [join(encodeBlock({ ...keys, key: Buffer.alloc(32, 7) }, 3, 1, Buffer.alloc(64))), DropReason.BadMac],
      [join(encodeBlock(other, 3, 1, Buffer.alloc(64))), DropReason.WrongSession],
      [join(encodeBlock(keys, 100, 1, Buffer.alloc(64))), DropReason.OutOfRange],
      [join(encodeBlock(keys, 0xffffffff, 1, Buffer.alloc(64))), DropReason.OutOfRange],
    ];
    for (const [buf, reason] of cases) expect(decode(buf, keys, 100)).toEqual({ ok: false, reason });
  });

  it('rejects a request whose body is not exactly the request size', () => {
    const req = join(encodeRequest(keys, { index: 1, seenSeq: 0, firstSeq: 0, clientId: 1, rxRateKiBps: 0, attempt: 0, quietMs: 0, counter: 1 }));
    // Re-frame the request with a longer body and a valid MAC: still refused.
    const asBlock = join(encodeBlock(keys, 1, 0, Buffer.alloc(REQUEST_BODY_BYTES + 4)));
    asBlock.writeUInt8(MessageType.Request, 3);
    expect(decode(asBlock, keys, 100)).toEqual({ ok: false, reason: DropReason.BadLength });
    expect(decode(req, keys, 100).ok).toBe(true);
  });

  it('compares sequence numbers across the wrap', () => {
    expect(seqAtOrAfter(5, 5)).toBe(true);
    expect(seqAtOrAfter(6, 5)).toBe(true);
    expect(seqAtOrAfter(5, 6)).toBe(false);
    expect(seqAtOrAfter(2, 0xfffffffe)).toBe(true);
    expect(seqAtOrAfter(0xfffffffe, 2)).toBe(false);
  });

  it('finds no frame in bytes that are not ours', () => {
    expect(frameLength(Buffer.alloc(HEADER_BYTES))).toBeUndefined();
    expect(frameLength(Buffer.alloc(3))).toBeUndefined();
  });
});
