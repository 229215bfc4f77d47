/**
 * A message connection over any byte stream (a TCP socket, a vchan adapter): sends objects as
 * frames, hands decoded frames to one handler, and closes itself when the peer breaks framing,
 * floods it, or stops reading. The handshake pulls messages with next(); afterwards a handler
 * takes them as they come.
 */
import type { Duplex } from 'node:stream';
import { FrameDecoder, encodeFrame, type Decoded } from './frame.js';
import { MAX_FRAME_BYTES, errorReply } from './protocol.js';

/** Messages that arrive before anyone listens (during the handshake) are kept up to this many. */
const MAX_QUEUED = 64;
/** Until its peer is authenticated, a link takes only frames the size of handshake messages... */
export const HANDSHAKE_FRAME_BYTES = 1024;
/** ...and keeps at most this many unread (the handshake sends one message at a time). */
const HANDSHAKE_QUEUED = 2;
/** A peer that lets this much of our output pile up is not reading: drop it. */
const MAX_UNSENT_BYTES = 8 * 1024 * 1024;

export interface MessageConnection {
  send(message: object): void;
  onMessage(handler: (m: Decoded) => void): void;
  onEnd(handler: () => void): void;
  next(timeoutMs: number): Promise<Decoded>;
  onClose(handler: (reason: string) => void): void;
  close(reason?: string): void;
  readonly closed: boolean;
  /** Who is on the other end, for logs and errors. */
  readonly peer: string;
}

export class FramedSocket implements MessageConnection {
  private readonly decoder: FrameDecoder;
  private handler: ((m: Decoded) => void) | null = null;
  private readonly queue: Decoded[] = [];
  private waiter: ((m: Decoded | null) => void) | null = null;
  private readonly closeHandlers: ((reason: string) => void)[] = [];
  private closeReason: string | null = null;
  private endHandler: (() => void) | null = null;
  private maxQueued = MAX_QUEUED;

  constructor(private readonly stream: Duplex, readonly peer: string, private readonly maxFrameBytes = MAX_FRAME_BYTES) {
    this.decoder = new FrameDecoder(maxFrameBytes);
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    stream.on('error', (e) => this.finish(`connection error: ${e.message}`));
    stream.on('close', () => this.finish('connection closed'));
    stream.on('end', () => {
      if (this.endHandler) this.endHandler();
      else this.finish('peer closed the connection');
    });
  }

  /** Until authenticated(): frames and the queue as small as a handshake needs. */
  limitUntilAuthenticated(): void {
    this.decoder.maxBytes = HANDSHAKE_FRAME_BYTES;
    this.maxQueued = HANDSHAKE_QUEUED;
  }

  authenticated(): void {
    this.decoder.maxBytes = this.maxFrameBytes;
    this.maxQueued = MAX_QUEUED;
  }

  get closed(): boolean {
    return this.closeReason !== null;
  }

  send(message: object): void {
    if (this.closed) return;
    if (this.stream.writableLength > MAX_UNSENT_BYTES) {
      this.close('peer is not reading its replies');
      return;
    }
    this.stream.write(encodeFrame(message, MAX_FRAME_BYTES));
  }

  onMessage(handler: (m: Decoded) => void): void {
    this.handler = handler;
    for (const m of this.queue.splice(0)) if (!this.closed) handler(m);
  }

  next(timeoutMs: number): Promise<Decoded> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new Error(this.closeReason!));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`no message from ${this.peer} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (m) => {
        clearTimeout(timer);
        this.waiter = null;
        if (m) resolve(m);
        else reject(new Error(this.closeReason ?? 'connection closed'));
      };
    });
  }

  /**
   * The peer finished sending (half-close). Without a handler that closes the connection; an
   * RPC peer instead answers what it already received first (`printf REQ | nc` gets its reply).
   */
  onEnd(handler: () => void): void {
    this.endHandler = handler;
  }

  onClose(handler: (reason: string) => void): void {
    if (this.closeReason !== null) handler(this.closeReason);
    else this.closeHandlers.push(handler);
  }

  close(reason = 'closed locally'): void {
    if (this.closed) return;
    this.stream.end(); // flushes a last error frame; finish() destroys the stream soon after
    this.finish(reason);
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    const { fatal, frames } = this.decoder.push(chunk);
    for (const f of frames) this.deliver(f);
    if (fatal !== null && !this.closed) {
      // The next bytes cannot be trusted to start a frame: say why, then hang up.
      this.stream.write(encodeFrame(errorReply(0, { code: 'bad-frame', message: fatal }), MAX_FRAME_BYTES));
      this.stream.end();
      this.finish(`bad frame from ${this.peer}: ${fatal}`);
    }
  }

  private deliver(m: Decoded): void {
    if (this.closed) return;
    if (this.waiter) this.waiter(m);
    else if (this.handler) this.handler(m);
    else if (this.queue.length < this.maxQueued) this.queue.push(m);
    else this.close(`${this.peer} sent more than ${this.maxQueued} messages before the handshake ended`);
  }

  private finish(reason: string): void {
    if (this.closeReason !== null) return;
    this.closeReason = reason;
    if (!this.stream.destroyed) setTimeout(() => this.stream.destroy(), 1000).unref(); // let the last error frame out
    this.waiter?.(null);
    for (const h of this.closeHandlers.splice(0)) h(reason);
  }
}
