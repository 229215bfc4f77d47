/**
 * Length-prefixed JSON frames: u32 big-endian byte count, then UTF-8 JSON. The length is read
 * before any body byte, so an oversized or empty frame is refused without buffering it; after
 * that the stream cannot be trusted to be in step, and the reader reports a fatal error.
 */
export const HEADER_BYTES = 4;

export function encodeFrame(message: object, maxBytes: number): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  if (body.length > maxBytes) throw new Error(`message of ${body.length} bytes exceeds the ${maxBytes}-byte frame limit`);
  const out = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, HEADER_BYTES);
  return out;
}

/** One decoded frame: its JSON value, or why it is not JSON (the stream stays usable). */
export type Decoded = { ok: true; value: unknown } | { ok: false; reason: string };

export type PushResult = { fatal: null; frames: Decoded[] } | { fatal: string; frames: Decoded[] };

/**
 * Chunks are kept as a list and joined only once a whole frame (or a header) is there, so a
 * frame sent a byte at a time is copied once, not once per byte.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;

  /** The largest frame accepted; a link may raise it once its peer is authenticated. */
  constructor(public maxBytes: number) {}

  push(chunk: Buffer): PushResult {
    const { fatal, frames } = this.pushRaw(chunk);
    return { fatal, frames: frames.map(decodeBody) } as PushResult;
  }

  /** The whole frames' bodies (after the length header), not yet decoded. */
  pushRaw(chunk: Buffer): { fatal: string | null; frames: Buffer[] } {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    const frames: Buffer[] = [];
    while (this.size >= HEADER_BYTES) {
      const len = this.take(HEADER_BYTES, false).readUInt32BE(0);
      if (len === 0) return { fatal: 'empty frame (length 0)', frames };
      if (len > this.maxBytes) return { fatal: `frame of ${len} bytes exceeds the ${this.maxBytes}-byte limit`, frames };
      if (this.size - HEADER_BYTES < len) break;
      frames.push(this.take(HEADER_BYTES + len, true).subarray(HEADER_BYTES));
    }
    return { fatal: null, frames };
  }

  /** The first n buffered bytes as one buffer (joined only when they span chunks); consume drops them. */
  private take(n: number, consume: boolean): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks, this.size)];
    const head = this.chunks[0]!;
    if (!consume) return head;
    if (head.length === n) this.chunks.shift();
    else this.chunks[0] = head.subarray(n);
    this.size -= n;
    return head.subarray(0, n);
  }
}

/** A frame's body as JSON. */
export function decodeBody(body: Buffer): Decoded {
  try {
    return { ok: true, value: JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body)) };
  } catch (e) {
    return { ok: false, reason: `frame is not UTF-8 JSON: ${(e as Error).message}` };
  }
}
