/**
 * A message connection over any byte stream (a TCP socket, a vchan adapter): sends objects as
 * frames, hands decoded frames to one handler, and closes itself when the peer breaks framing,
 * floods it, or stops reading. The handshake pulls messages with next(); afterwards a handler
 * takes them as they come. A link between daemons is sealed after its handshake (secure()):
 * from then on every frame in and out goes through its LinkCipher, and a frame that does not
 * open ends the link before anyone sees it. Frames are kept as bytes until they are handed out,
 * so a frame that arrived with the handshake's last one is opened under the keys, not read as
 * plain JSON.
 */
import type { Duplex } from 'node:stream';
import { FrameDecoder, HEADER_BYTES, decodeBody, encodeFrame, type Decoded } from './frame.js';
import { LinkCipher, SEAL_OVERHEAD, type LinkKeys } from './link-cipher.js';
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
  /** From now on every frame in and out is sealed with these keys (link-cipher.ts). */
  secure(keys: LinkKeys): void;
  readonly closed: boolean;
  /** Who is on the other end, for logs and errors. */
  readonly peer: string;
}

export class FramedSocket implements MessageConnection {
  private readonly decoder: FrameDecoder;
  private handler: ((m: Decoded) => void) | null = null;
  /** Frames not yet handed out, as they came off the wire. */
  private readonly queue: Buffer[] = [];
  private waiter: ((m: Decoded | null) => void) | null = null;
  private readonly closeHandlers: ((reason: string) => void)[] = [];
  private closeReason: string | null = null;
  private endHandler: (() => void) | null = null;
  private maxQueued = MAX_QUEUED;
  private cipher: LinkCipher | null = null;
  /** What sealing adds to each frame once secure() was called. */
  private overhead = 0;

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
    this.decoder.maxBytes = HANDSHAKE_FRAME_BYTES + this.overhead;
    this.maxQueued = HANDSHAKE_QUEUED;
  }

  authenticated(): void {
    this.decoder.maxBytes = this.maxFrameBytes + this.overhead;
    this.maxQueued = MAX_QUEUED;
  }

  secure(keys: LinkKeys): void {
    if (this.cipher) throw new Error('this link is sealed already');
    this.cipher = new LinkCipher(keys);
    this.overhead = SEAL_OVERHEAD;
    this.decoder.maxBytes += SEAL_OVERHEAD;
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
    this.stream.write(this.encode(message));
  }

  private encode(message: object): Buffer {
    const plain = encodeFrame(message, MAX_FRAME_BYTES);
    return this.cipher ? this.cipher.seal(plain.subarray(HEADER_BYTES)) : plain;
  }

  onMessage(handler: (m: Decoded) => void): void {
    this.handler = handler;
    for (const raw of this.queue.splice(0)) {
      if (this.closed) break;
      const m = this.open(raw);
      if (m) handler(m);
    }
  }

  next(timeoutMs: number): Promise<Decoded> {
    const queued = this.queue.shift();
    if (queued) {
      const m = this.open(queued);
      return m ? Promise.resolve(m) : Promise.reject(new Error(this.closeReason!));
    }
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
    const { fatal, frames } = this.decoder.pushRaw(chunk);
    for (const f of frames) this.deliver(f);
    if (fatal !== null && !this.closed) {
      // The next bytes cannot be trusted to start a frame: say why, then hang up.
      this.stream.write(this.encode(errorReply(0, { code: 'bad-frame', message: fatal })));
      this.stream.end();
      this.finish(`bad frame from ${this.peer}: ${fatal}`);
    }
  }

  private deliver(raw: Buffer): void {
    if (this.closed) return;
    if (this.waiter || this.handler) {
      const m = this.open(raw);
      if (!m) return;
      if (this.waiter) this.waiter(m);
      else this.handler!(m);
    } else if (this.queue.length < this.maxQueued) this.queue.push(raw);
    else this.close(`${this.peer} sent more than ${this.maxQueued} messages before the handshake ended`);
  }

  /** A frame's message; null when a sealed link's frame does not open (the link is closed then). */
  private open(raw: Buffer): Decoded | null {
    if (this.closed) return null;
    if (!this.cipher) return decodeBody(raw);
    const r = this.cipher.open(raw);
    if (r.ok) return decodeBody(r.body);
    const message = `${this.peer}: ${r.reason}`;
    this.stream.write(this.encode(errorReply(0, { code: 'auth-failed', message })));
    this.stream.end();
    this.finish(message);
    return null;
  }

  private finish(reason: string): void {
    if (this.closeReason !== null) return;
    this.closeReason = reason;
    if (!this.stream.destroyed) setTimeout(() => this.stream.destroy(), 1000).unref(); // let the last error frame out
    this.waiter?.(null);
    for (const h of this.closeHandlers.splice(0)) h(reason);
  }
}
