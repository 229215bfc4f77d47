/**
 * mcdist wire format, version 3 (version 1 had no request number; version 2 sent blocks in
 * clear with an HMAC).
 *
 * Every message, on UDP (one message per datagram) and on the TCP fallback
 * (messages back to back on the stream), has the same layout. Integers are
 * big-endian.
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------------
 *        0     2  magic 0x5346 ("SF")
 *        2     1  version (1)
 *        3     1  type: 1 = REQUEST (client -> server), 2 = BLOCK (server -> group)
 *        4     8  session id: one per fork family, chosen at random by the parent
 *       12     4  block index
 *       16     4  sequence: in a BLOCK, the server's send counter (1, 2, ...);
 *                 in a REQUEST, the highest BLOCK sequence the client has
 *                 received (0: none yet). Lets the server tell a lost reply
 *                 from one still on its way (see lockstep.ts). Serial-number
 *                 arithmetic (RFC 1982), so it may wrap.
 *       20     4  body length in bytes (L)
 *       24     L  body
 *     24+L    16  MAC: in a REQUEST, HMAC-SHA256(session key, bytes 0 .. 24+L) truncated to
 *                 16 bytes; in a BLOCK, the AES-256-GCM tag (block-seal.ts)
 *
 * REQUEST body (20 bytes):
 *        0     4  client id (random per client; keys the server's per-client rate table)
 *        4     4  client receive rate, KiB/s (the weighted average the client measures)
 *        8     4  first BLOCK sequence the client received (0: none yet), i.e. when
 *                 it started listening
 *       12     2  attempt: 0 for the first request of this block, +1 per retransmission
 *       14     2  quiet time: ms since the client last received a BLOCK (or since it
 *                 started, if none), capped at 65535
 *       16     4  request number: 1, 2, ... per client id; the server takes each once
 *                 (replay.ts), so a recorded request sent again is dropped
 *
 * BLOCK body: a 12-byte nonce (block-seal.ts: the sender's random prefix and
 * counter), then the block's bytes sealed with AES-256-GCM under a key derived
 * from the session key, the header and nonce as associated data. The block is
 * at most the session's block size (a short last block is allowed: descriptors
 * and disks need not end on a block boundary).
 *
 * The MAC (or tag) is both the checksum and the session fence: a block is used
 * only if it verifies under this session's key, so a corrupted datagram, or one from
 * another fork family that happens to share the group or port, is dropped.
 * Decoding never throws: it returns a drop reason, which callers count.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { NONCE_BYTES, TAG_BYTES, openBlock, processNonces, sealBlock, type BlockNonces } from './block-seal.js';

export const MAGIC = 0x5346;
export const VERSION = 3;
export const HEADER_BYTES = 24;
export const MAC_BYTES = 16;
export const REQUEST_BODY_BYTES = 20;
export const SESSION_ID_BYTES = 8;
/** Largest block a UDP datagram can carry with our framing (IPv4, 65507-byte payload limit). */
export const MAX_UDP_BLOCK_BYTES = 65507 - HEADER_BYTES - NONCE_BYTES - MAC_BYTES;
/** A BLOCK message's bytes around the block itself: header, nonce, tag. */
export const BLOCK_OVERHEAD_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;

export const MessageType = { Request: 1, Block: 2 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export interface RequestMessage {
  type: typeof MessageType.Request;
  index: number;
  /** Highest and first BLOCK sequence the client has received (0: none). */
  seenSeq: number;
  firstSeq: number;
  clientId: number;
  rxRateKiBps: number;
  attempt: number;
  /** Milliseconds since the client last received a BLOCK. */
  quietMs: number;
  /** The client's request number (1, 2, ...): each is taken once. */
  counter: number;
}

export interface BlockMessage {
  type: typeof MessageType.Block;
  index: number;
  seq: number;
  /** The opened block (a buffer of its own). */
  data: Buffer;
  /** The sender's nonce, authenticated: a receiver takes each once (BlockReplayGuard). */
  nonce: Buffer;
}

export type Message = RequestMessage | BlockMessage;

/** Why a datagram was dropped. Each reason has its own counter. */
export const DropReason = {
  Truncated: 'truncated',
  BadMagic: 'badMagic',
  BadVersion: 'badVersion',
  BadType: 'badType',
  WrongSession: 'wrongSession',
  BadLength: 'badLength',
  BadMac: 'badMac',
  OutOfRange: 'outOfRange',
  UnexpectedType: 'unexpectedType',
  TestDropped: 'testDropped',
  Replayed: 'replayed',
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

export type DropCounters = Record<DropReason, number>;

export function newDropCounters(): DropCounters {
  return {
    truncated: 0, badMagic: 0, badVersion: 0, badType: 0, wrongSession: 0,
    badLength: 0, badMac: 0, outOfRange: 0, unexpectedType: 0, testDropped: 0, replayed: 0,
  };
}

export function totalDrops(c: DropCounters): number {
  let n = 0;
  for (const v of Object.values(c)) n += v;
  return n;
}

/** What a decoder needs to know about the session it belongs to. */
export interface WireKeys {
  sessionId: Buffer; // SESSION_ID_BYTES
  key: Buffer;
  /** Largest BLOCK body accepted. */
  blockSize: number;
}

export type DecodeResult = { ok: true; msg: Message } | { ok: false; reason: DropReason };

function mac(key: Buffer, parts: readonly Buffer[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, MAC_BYTES);
}

function header(keys: WireKeys, type: MessageType, index: number, seq: number, bodyLength: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  h.writeUInt16BE(MAGIC, 0);
  h.writeUInt8(VERSION, 2);
  h.writeUInt8(type, 3);
  keys.sessionId.copy(h, 4, 0, SESSION_ID_BYTES);
  h.writeUInt32BE(index >>> 0, 12);
  h.writeUInt32BE(seq >>> 0, 16);
  h.writeUInt32BE(bodyLength >>> 0, 20);
  return h;
}

/** a is at or after b in sequence space (RFC 1982 serial arithmetic on 32 bits). */
export function seqAtOrAfter(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/**
 * A message as the list of buffers to send: [header, nonce, sealed block, tag]. dgram and net
 * sockets both take buffer lists. `nonces` is the process's counter unless a test gives its own.
 */
export function encodeBlock(keys: WireKeys, index: number, seq: number, data: Buffer, nonces: BlockNonces = processNonces): Buffer[] {
  const h = header(keys, MessageType.Block, index, seq, NONCE_BYTES + data.length);
  const nonce = nonces.next();
  const { ciphertext, tag } = sealBlock(keys.key, nonce, Buffer.concat([h, nonce]), data);
  return [h, nonce, ciphertext, tag];
}

export function encodeRequest(
  keys: WireKeys,
  req: Omit<RequestMessage, 'type'>,
): Buffer[] {
  const h = header(keys, MessageType.Request, req.index, req.seenSeq, REQUEST_BODY_BYTES);
  const b = Buffer.allocUnsafe(REQUEST_BODY_BYTES);
  b.writeUInt32BE(req.clientId >>> 0, 0);
  b.writeUInt32BE(Math.min(0xffffffff, Math.max(0, Math.round(req.rxRateKiBps))), 4);
  b.writeUInt32BE(req.firstSeq >>> 0, 8);
  b.writeUInt16BE(Math.min(0xffff, Math.max(0, req.attempt)), 12);
  b.writeUInt16BE(Math.min(0xffff, Math.max(0, Math.round(req.quietMs))), 14);
  b.writeUInt32BE(req.counter >>> 0, 16);
  return [h, b, mac(keys.key, [h, b])];
}

/** Total message length announced by a header, or undefined if the header is not ours. */
export function frameLength(buf: Buffer, offset = 0): number | undefined {
  if (buf.length - offset < HEADER_BYTES) return undefined;
  if (buf.readUInt16BE(offset) !== MAGIC) return undefined;
  return HEADER_BYTES + buf.readUInt32BE(offset + 20) + MAC_BYTES;
}

/**
 * Decode and authenticate one message. `blockCount` bounds the block index;
 * it is checked after the MAC so only authenticated fields are interpreted.
 */
export function decode(buf: Buffer, keys: WireKeys, blockCount: number): DecodeResult {
  if (buf.length < HEADER_BYTES + MAC_BYTES) return { ok: false, reason: DropReason.Truncated };
  if (buf.readUInt16BE(0) !== MAGIC) return { ok: false, reason: DropReason.BadMagic };
  if (buf.readUInt8(2) !== VERSION) return { ok: false, reason: DropReason.BadVersion };
  const type = buf.readUInt8(3);
  if (type !== MessageType.Request && type !== MessageType.Block) {
    return { ok: false, reason: DropReason.BadType };
  }
  if (buf.compare(keys.sessionId, 0, SESSION_ID_BYTES, 4, 4 + SESSION_ID_BYTES) !== 0) {
    return { ok: false, reason: DropReason.WrongSession };
  }
  const bodyLength = buf.readUInt32BE(20);
  if (HEADER_BYTES + bodyLength + MAC_BYTES !== buf.length) {
    // Shorter than announced means the datagram was cut; longer means trailing garbage.
    return {
      ok: false,
      reason: buf.length < HEADER_BYTES + bodyLength + MAC_BYTES ? DropReason.Truncated : DropReason.BadLength,
    };
  }
  const lengthOk = type === MessageType.Request
    ? bodyLength === REQUEST_BODY_BYTES
    : bodyLength >= NONCE_BYTES && bodyLength - NONCE_BYTES <= keys.blockSize;
  if (!lengthOk) return { ok: false, reason: DropReason.BadLength };
  const macAt = HEADER_BYTES + bodyLength;
  if (type === MessageType.Block) return decodeBlock(buf, keys, blockCount, macAt);
  const expected = mac(keys.key, [buf.subarray(0, macAt)]);
  if (!timingSafeEqual(expected, buf.subarray(macAt, macAt + MAC_BYTES))) {
    return { ok: false, reason: DropReason.BadMac };
  }
  const index = buf.readUInt32BE(12);
  if (index >= blockCount) return { ok: false, reason: DropReason.OutOfRange };
  const seq = buf.readUInt32BE(16);
  return {
    ok: true,
    msg: {
      type,
      index,
      seenSeq: seq,
      clientId: buf.readUInt32BE(HEADER_BYTES),
      rxRateKiBps: buf.readUInt32BE(HEADER_BYTES + 4),
      firstSeq: buf.readUInt32BE(HEADER_BYTES + 8),
      attempt: buf.readUInt16BE(HEADER_BYTES + 12),
      quietMs: buf.readUInt16BE(HEADER_BYTES + 14),
      counter: buf.readUInt32BE(HEADER_BYTES + 16),
    },
  };
}

/** A BLOCK whose header checked out: opened (a tag that does not verify is badMac), then its index bounded. */
function decodeBlock(buf: Buffer, keys: WireKeys, blockCount: number, tagAt: number): DecodeResult {
  const sealedAt = HEADER_BYTES + NONCE_BYTES;
  const data = openBlock(keys.key, buf.subarray(HEADER_BYTES, sealedAt), buf.subarray(0, sealedAt), buf.subarray(sealedAt, tagAt), buf.subarray(tagAt, tagAt + TAG_BYTES));
  if (!data) return { ok: false, reason: DropReason.BadMac };
  const index = buf.readUInt32BE(12);
  if (index >= blockCount) return { ok: false, reason: DropReason.OutOfRange };
  return { ok: true, msg: { type: MessageType.Block, index, seq: buf.readUInt32BE(16), data, nonce: Buffer.from(buf.subarray(HEADER_BYTES, sealedAt)) } };
}

/**
 * The receive path both ends share: the test harness's simulated loss, then decode and
 * authentication, then the message type this end expects. Every refusal is counted.
 */
export function admitDatagram<T extends MessageType>(
  buf: Buffer,
  keys: WireKeys,
  blockCount: number,
  expected: T,
  drops: DropCounters,
  testDropRate?: number,
): Extract<Message, { type: T }> | undefined {
  if (testDropRate !== undefined && testDropRate > 0 && Math.random() < testDropRate) {
    drops.testDropped++;
    return undefined;
  }
  const r = decode(buf, keys, blockCount);
  if (!r.ok) {
    drops[r.reason]++;
    return undefined;
  }
  if (r.msg.type !== expected) {
    drops[DropReason.UnexpectedType]++;
    return undefined;
  }
  return r.msg as Extract<Message, { type: T }>;
}
