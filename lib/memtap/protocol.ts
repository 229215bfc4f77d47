// The memserver wire protocol, shared byte for byte with the C++ client (native/page_client.cc).
// Little endian. Every message is a frame: u32 length (bytes after this field), u8 type, payload.
// Version 2: a handshake in which neither side sends the fork's key, then every frame sealed
// (secure.ts has the key schedule and the sealed layout).
//   1 HELLO     c→s  "SFMTAP01", u32 version, u32 vmid, 32-byte client nonce
//   9 CHALLENGE s→c  u32 version, u32 flags, 32-byte server nonce, 32-byte server proof
//  10 PROOF     c→s  32-byte client proof; from here on frames are sealed
//   2 WELCOME s→c  u64 pages, 16-byte image id, u32 n, n × (u64 start, u64 count) to page out,
//                  u32 m, m × u64 gfn to load before the clone first runs
//   3 GET     c→s  u32 count (1..256), count × u64 gfn
//   4 PAGES   s→c  u32 count, count × u64 gfn (the GET's order), count × 4096 bytes
//   5 ERROR   s→c  u32 code, UTF-8 message; the server closes the connection after it
//                  (unsealed before the handshake is done, sealed after)
//   6 BYE     c→s  u32 vmid: that clone is finished
//   7 PING    c→s  u32 nonce, ≤ 4096 bytes;  8 PONG s→c: the same nonce and bytes
// A peer of another version learns it from the ERROR (or, as a client, from the HELLO check).
import type { GfnRange } from '../xen/native.js';

export const MAGIC = Buffer.from('SFMTAP01', 'latin1');
export const VERSION = 2;
export const PAGE_SIZE = 4096;
export const TOKEN_BYTES = 32;
export const IMAGE_ID_BYTES = 16;
export const MAX_GET = 256;
export const MAX_PING_PAYLOAD = 4096;
/** the largest frame length the server accepts, and the largest the C++ client reads */
export const MAX_FRAME = (1 << 20) + 64;
/** A full PAGES reply (256 pages plus their gfns) is 1 + 4 + 256 × 4104 bytes: more than
 *  MAX_FRAME. The TS client reads up to this; the C++ client asks for ≤ 128 pages at a time. */
export const MAX_REPLY_FRAME = 1 + 4 + MAX_GET * (8 + PAGE_SIZE);
/** the same, sealed (secure.ts adds a 16-byte tag) */
export const MAX_REPLY_RECORD = MAX_REPLY_FRAME + 16;

export const MsgType = { Hello: 1, Welcome: 2, Get: 3, Pages: 4, Error: 5, Bye: 6, Ping: 7, Pong: 8, Challenge: 9, Proof: 10 } as const;

export const ErrorCode = { BadMagic: 1, BadToken: 2, UnknownGfn: 3, Malformed: 4, TooManyGfns: 5 } as const;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** A frame the peer got wrong; `code` is what the server answers with. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCodeValue,
    message: string,
  ) {
    super(message);
  }
}

export interface Frame {
  type: number;
  payload: Buffer;
}

export interface Hello {
  vmid: number;
  /** 32 fresh random bytes */
  nonce: Buffer;
}

export interface Challenge {
  version: number;
  flags: number;
  nonce: Buffer;
  proof: Buffer;
}

export interface Welcome {
  pages: number;
  imageId: Buffer;
  evict: GfnRange[];
  eager: number[];
}

const NONCE = 32;
const HELLO_BYTES = 8 + 4 + 4 + NONCE;
export const CHALLENGE_BYTES = 4 + 4 + NONCE + 32;
/** the part of a CHALLENGE its proof covers */
export const CHALLENGE_HEAD_BYTES = 4 + 4 + NONCE;

/** `room`: spare bytes after the frame (a seal's tag, written in place) */
function frame(type: number, payloadBytes: number, room = 0): Buffer {
  const b = Buffer.alloc(5 + payloadBytes + room);
  b.writeUInt32LE(payloadBytes + 1, 0);
  b[4] = type;
  return b;
}

/** Reads a u64 gfn; anything past 2^53 cannot be in an image (descriptors hold JS numbers). */
function readGfn(b: Buffer, at: number): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(ErrorCode.UnknownGfn, `unknown gfn 0x${v.toString(16)}`);
  return Number(v);
}

function malformed(what: string): never {
  throw new ProtocolError(ErrorCode.Malformed, what);
}

export function encodeHello(h: Hello, magic = MAGIC, version = VERSION): Buffer {
  const b = frame(MsgType.Hello, HELLO_BYTES);
  magic.copy(b, 5, 0, 8);
  b.writeUInt32LE(version, 13);
  b.writeUInt32LE(h.vmid, 17);
  h.nonce.copy(b, 21, 0, NONCE);
  return b;
}

/** Magic, then version (a version-1 HELLO has another layout), then length. */
export function decodeHello(p: Buffer): Hello {
  if (p.length < 12 || !p.subarray(0, 8).equals(MAGIC)) throw new ProtocolError(ErrorCode.BadMagic, 'bad magic: not a memtap client');
  const version = p.readUInt32LE(8);
  if (version !== VERSION) {
    throw new ProtocolError(ErrorCode.BadMagic, `protocol version ${version} is not supported (server speaks ${VERSION}): memtap and memserver must come from one snowflock version`);
  }
  if (p.length !== HELLO_BYTES) malformed(`HELLO is ${p.length} bytes, expected ${HELLO_BYTES}`);
  return { vmid: p.readUInt32LE(12), nonce: Buffer.from(p.subarray(16, 16 + NONCE)) };
}

export function encodeChallenge(c: Challenge): Buffer {
  const b = frame(MsgType.Challenge, CHALLENGE_BYTES);
  b.writeUInt32LE(c.version, 5);
  b.writeUInt32LE(c.flags, 9);
  c.nonce.copy(b, 13, 0, NONCE);
  c.proof.copy(b, 13 + NONCE, 0, 32);
  return b;
}

/** The client's check: a server of another version is named. */
export function decodeChallenge(p: Buffer): Challenge {
  if (p.length >= 4 && p.readUInt32LE(0) !== VERSION) {
    throw new ProtocolError(ErrorCode.BadMagic, `memserver speaks protocol version ${p.readUInt32LE(0)}, this client ${VERSION}`);
  }
  if (p.length !== CHALLENGE_BYTES) malformed(`CHALLENGE is ${p.length} bytes, expected ${CHALLENGE_BYTES}`);
  return { version: VERSION, flags: p.readUInt32LE(4), nonce: Buffer.from(p.subarray(8, 8 + NONCE)), proof: Buffer.from(p.subarray(8 + NONCE)) };
}

export function encodeProof(proof: Buffer): Buffer {
  const b = frame(MsgType.Proof, 32);
  proof.copy(b, 5, 0, 32);
  return b;
}

export function decodeProof(p: Buffer): Buffer {
  if (p.length !== 32) malformed(`PROOF is ${p.length} bytes, expected 32`);
  return p;
}

export function encodeWelcome(w: Welcome): Buffer {
  const b = frame(MsgType.Welcome, 8 + IMAGE_ID_BYTES + 4 + w.evict.length * 16 + 4 + w.eager.length * 8);
  let at = 5;
  b.writeBigUInt64LE(BigInt(w.pages), at);
  w.imageId.copy(b, at + 8, 0, IMAGE_ID_BYTES);
  at += 8 + IMAGE_ID_BYTES;
  b.writeUInt32LE(w.evict.length, at);
  at += 4;
  for (const [start, count] of w.evict) {
    b.writeBigUInt64LE(BigInt(start), at);
    b.writeBigUInt64LE(BigInt(count), at + 8);
    at += 16;
  }
  b.writeUInt32LE(w.eager.length, at);
  at += 4;
  for (const g of w.eager) {
    b.writeBigUInt64LE(BigInt(g), at);
    at += 8;
  }
  return b;
}

export function decodeWelcome(p: Buffer): Welcome {
  const fixed = 8 + IMAGE_ID_BYTES + 4;
  if (p.length < fixed + 4) malformed('WELCOME is truncated');
  const n = p.readUInt32LE(fixed - 4);
  let at = fixed;
  if (p.length < at + n * 16 + 4) malformed('WELCOME: short evict list');
  const evict: GfnRange[] = [];
  for (let i = 0; i < n; i++, at += 16) evict.push([readGfn(p, at), readGfn(p, at + 8)]);
  const m = p.readUInt32LE(at);
  at += 4;
  if (p.length !== at + m * 8) malformed('WELCOME: eager list does not match its length');
  const eager: number[] = [];
  for (let i = 0; i < m; i++, at += 8) eager.push(readGfn(p, at));
  return { pages: Number(p.readBigUInt64LE(0)), imageId: Buffer.from(p.subarray(8, 8 + IMAGE_ID_BYTES)), evict, eager };
}

export function encodeGet(gfns: readonly number[]): Buffer {
  const b = frame(MsgType.Get, 4 + gfns.length * 8);
  b.writeUInt32LE(gfns.length, 5);
  gfns.forEach((g, i) => b.writeBigUInt64LE(BigInt(g), 9 + i * 8));
  return b;
}

/** Checks count and length before reading any gfn; an out-of-range gfn is UnknownGfn. */
export function decodeGet(p: Buffer): number[] {
  if (p.length < 4) malformed('GET is truncated');
  const count = p.readUInt32LE(0);
  if (count > MAX_GET) throw new ProtocolError(ErrorCode.TooManyGfns, `GET asks for ${count} pages; at most ${MAX_GET} per request`);
  if (count === 0) malformed('GET asks for no pages');
  if (p.length !== 4 + count * 8) malformed(`GET of ${count} gfns is ${p.length} bytes`);
  const gfns: number[] = [];
  for (let i = 0; i < count; i++) gfns.push(readGfn(p, 4 + i * 8));
  return gfns;
}

/**
 * Header and gfn list of a PAGES frame; the caller reads the pages into it at `dataOffset`.
 * `room` bytes are left after it, for a seal's tag (secure.ts's Sealer.sealInPlace).
 */
export function pagesFrame(gfns: readonly number[], room = 0): { frame: Buffer; dataOffset: number } {
  const dataOffset = 5 + 4 + gfns.length * 8;
  const b = frame(MsgType.Pages, dataOffset - 5 + gfns.length * PAGE_SIZE, room);
  b.writeUInt32LE(gfns.length, 5);
  gfns.forEach((g, i) => b.writeBigUInt64LE(BigInt(g), 9 + i * 8));
  return { frame: b, dataOffset };
}

export function encodePages(gfns: readonly number[], data: Buffer): Buffer {
  const { frame: b, dataOffset } = pagesFrame(gfns);
  data.copy(b, dataOffset, 0, gfns.length * PAGE_SIZE);
  return b;
}

export function decodePages(p: Buffer): { gfns: number[]; data: Buffer } {
  if (p.length < 4) malformed('PAGES is truncated');
  const count = p.readUInt32LE(0);
  if (p.length !== 4 + count * (8 + PAGE_SIZE)) malformed(`PAGES of ${count} pages is ${p.length} bytes`);
  const gfns: number[] = [];
  for (let i = 0; i < count; i++) gfns.push(readGfn(p, 4 + i * 8));
  return { gfns, data: p.subarray(4 + count * 8) };
}

export function encodeError(code: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8').subarray(0, 1024);
  const b = frame(MsgType.Error, 4 + text.length);
  b.writeUInt32LE(code, 5);
  text.copy(b, 9);
  return b;
}

export function decodeError(p: Buffer): { code: number; message: string } {
  if (p.length < 4) malformed('ERROR is truncated');
  return { code: p.readUInt32LE(0), message: p.subarray(4).toString('utf8') };
}

export function encodeBye(vmid: number): Buffer {
  const b = frame(MsgType.Bye, 4);
  b.writeUInt32LE(vmid, 5);
  return b;
}

export function decodeBye(p: Buffer): number {
  if (p.length !== 4) malformed(`BYE is ${p.length} bytes, expected 4`);
  return p.readUInt32LE(0);
}

function encodeEcho(type: number, nonce: number, payload: Buffer): Buffer {
  const b = frame(type, 4 + payload.length);
  b.writeUInt32LE(nonce, 5);
  payload.copy(b, 9);
  return b;
}

export const encodePing = (nonce: number, payload: Buffer = Buffer.alloc(0)) => encodeEcho(MsgType.Ping, nonce, payload);
export const encodePong = (nonce: number, payload: Buffer) => encodeEcho(MsgType.Pong, nonce, payload);

/** PING and PONG share a layout. */
export function decodeEcho(p: Buffer): { nonce: number; payload: Buffer } {
  if (p.length < 4 || p.length > 4 + MAX_PING_PAYLOAD) malformed(`PING/PONG is ${p.length} bytes; 4..${4 + MAX_PING_PAYLOAD} allowed`);
  return { nonce: p.readUInt32LE(0), payload: p.subarray(4) };
}

/**
 * Cuts a TCP byte stream into frames, whatever the chunking. Chunks are kept as a list and
 * joined only when a frame is complete, so a 1 MiB reply in 64 KiB chunks is copied once.
 * A zero or oversized length means the stream is out of step: push() returns the frames
 * before it, sets `error` (Malformed), and returns nothing more after that.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private need = -1; // bytes of the current frame, length field included; -1 until known
  error?: ProtocolError;

  constructor(private readonly maxFrame = MAX_FRAME) {}

  push(chunk: Buffer): Frame[] {
    return this.pushRecords(chunk).map((r) => ({ type: r[0]!, payload: r.subarray(1) }));
  }

  /** The same cut, but each frame whole after its length field (a sealed frame is opened from this). */
  pushRecords(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (this.error) return out;
    if (chunk.length) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    for (;;) {
      if (this.need < 0) {
        if (this.size < 4) break;
        const length = this.head().readUInt32LE(0);
        if (length === 0 || length > this.maxFrame) {
          this.error = new ProtocolError(ErrorCode.Malformed, `bad frame length ${length}`);
          this.chunks = [];
          this.size = 0;
          break;
        }
        this.need = 4 + length;
      }
      if (this.size < this.need) break;
      const all = this.head();
      out.push(all.subarray(4, this.need));
      const rest = all.subarray(this.need);
      this.chunks = rest.length ? [rest] : [];
      this.size = rest.length;
      this.need = -1;
    }
    return out;
  }

  /** bytes buffered towards the next frame */
  get buffered(): number {
    return this.size;
  }

  private head(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
    return this.chunks[0]!;
  }
}
