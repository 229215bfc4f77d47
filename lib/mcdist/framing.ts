/**
 * Cuts a TCP byte stream back into wire messages. Messages are laid back to
 * back with the same layout as datagrams (wire.ts), so the header's length
 * field is the framing. A header that is not ours, or announces more than the
 * largest legal message, means the stream is out of step: the connection is
 * unusable and the reader says so instead of buffering garbage.
 */
import { HEADER_BYTES, frameLength } from './wire.js';

export type FrameResult = { ok: true; frames: Buffer[] } | { ok: false; reason: 'badMagic' | 'badLength' };

export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrameBytes: number) {}

  /** Append a chunk; returns the complete frames it finished. */
  push(chunk: Buffer): FrameResult {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Buffer[] = [];
    let at = 0;
    while (this.pending.length - at >= HEADER_BYTES) {
      const len = frameLength(this.pending, at);
      if (len === undefined) return { ok: false, reason: 'badMagic' };
      if (len > this.maxFrameBytes) return { ok: false, reason: 'badLength' };
      if (this.pending.length - at < len) break;
      frames.push(this.pending.subarray(at, at + len));
      at += len;
    }
    this.pending = this.pending.subarray(at);
    return { ok: true, frames };
  }
}
