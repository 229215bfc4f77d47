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

export class FrameDecoder {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): PushResult {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Decoded[] = [];
    let at = 0;
    while (this.pending.length - at >= HEADER_BYTES) {
      const len = this.pending.readUInt32BE(at);
      if (len === 0) return { fatal: 'empty frame (length 0)', frames };
      if (len > this.maxBytes) return { fatal: `frame of ${len} bytes exceeds the ${this.maxBytes}-byte limit`, frames };
      if (this.pending.length - at - HEADER_BYTES < len) break;
      frames.push(decodeJson(this.pending.subarray(at + HEADER_BYTES, at + HEADER_BYTES + len)));
      at += HEADER_BYTES + len;
    }
    this.pending = this.pending.subarray(at);
    return { fatal: null, frames };
  }
}

function decodeJson(body: Buffer): Decoded {
  try {
    return { ok: true, value: JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body)) };
  } catch (e) {
    return { ok: false, reason: `frame is not UTF-8 JSON: ${(e as Error).message}` };
  }
}
