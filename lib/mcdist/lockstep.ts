/**
 * Lockstep detection.
 *
 * Clones of one parent run the same code and fault on the same pages at
 * nearly the same time. One multicast reply satisfies all of them, so the
 * server answers the first request and ignores the rest:
 *
 *   - a request for a block already queued is merged into the queued send;
 *   - a request for a block sent less than `windowMs` ago is ignored: the
 *     reply is on the wire and the requester will see it;
 *   - a request for a block sent `windowMs` or more ago is served again. Its
 *     sender missed the reply: it is a loss, and the server's flow control
 *     hears about it.
 *
 * The window must be shorter than the clients' retransmit timeout, so a
 * retransmission after a real loss always falls outside it and is served.
 */

export const Verdict = {
  /** First request for this block: send it. */
  Serve: 'serve',
  /** Sent before, outside the window: send again, and count a loss. */
  Resend: 'resend',
  /** Already queued: the queued send answers this request too. */
  Merge: 'merge',
  /** Sent within the window: the reply is on its way. */
  Suppress: 'suppress',
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

export class LockstepFilter {
  /** Time each block was last sent; NaN = never. */
  private readonly lastSent: Float64Array;
  private readonly queued: Uint8Array;

  constructor(blockCount: number, readonly windowMs: number) {
    this.lastSent = new Float64Array(blockCount).fill(Number.NaN);
    this.queued = new Uint8Array(blockCount);
  }

  /** Decide what to do with a request; Serve and Resend mark the block queued. */
  onRequest(index: number, now: number): Verdict {
    if (this.queued[index] === 1) return Verdict.Merge;
    const last = this.lastSent[index]!;
    if (!Number.isNaN(last) && now - last < this.windowMs) return Verdict.Suppress;
    this.queued[index] = 1;
    return Number.isNaN(last) ? Verdict.Serve : Verdict.Resend;
  }

  /** The queued block went out at `now`. */
  onSent(index: number, now: number): void {
    this.queued[index] = 0;
    this.lastSent[index] = now;
  }

  everSent(index: number): boolean {
    return !Number.isNaN(this.lastSent[index]!);
  }
}
