/**
 * Lockstep detection.
 *
 * Clones of one parent run the same code and fault on the same pages at
 * nearly the same time. One multicast reply satisfies all of them, so the
 * server answers the first request and drops the rest. For a request of a
 * block that is queued or was sent before, the question is whether the
 * requester lost the reply or simply asked before the reply reached it:
 *
 *   - queued: the queued send answers this request too (Merge);
 *   - sent, and the requester has since received a later send (its request
 *     carries the highest sequence it has seen): the reply was lost, since a
 *     LAN does not reorder one sender's datagrams. Send again and tell flow
 *     control (Lost);
 *   - sent less than `windowMs` ago, no sign of loss: the request crossed the
 *     reply, which is still on its way (Suppress);
 *   - sent `windowMs` or more ago: send again (Stale). That is a client that
 *     joined late, or one that lost the reply and everything after it. It is
 *     not taken as a congestion signal: a late joiner is not congestion.
 *
 * The window is the clients' retransmit timeout, so a request repeated
 * because of a loss is served again at the latest on its next retransmission.
 */
import { seqAtOrAfter } from './wire.js';

export const Verdict = {
  /** First request for this block: send it. */
  Serve: 'serve',
  /** The requester missed the last send: send again, and count a loss. */
  Lost: 'lost',
  /** Last sent long ago: send again. */
  Stale: 'stale',
  /** Already queued: the queued send answers this request too. */
  Merge: 'merge',
  /** Sent within the window: the reply is on its way. */
  Suppress: 'suppress',
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

export class LockstepFilter {
  /** Time each block was last sent; NaN = never. */
  private readonly lastSent: Float64Array;
  /** Sequence number of each block's last send. */
  private readonly lastSeq: Uint32Array;
  private readonly queued: Uint8Array;

  constructor(blockCount: number, readonly windowMs: number) {
    this.lastSent = new Float64Array(blockCount).fill(Number.NaN);
    this.lastSeq = new Uint32Array(blockCount);
    this.queued = new Uint8Array(blockCount);
  }

  /**
   * Decide what to do with a request from a client that has seen sends up to
   * `seenSeq`. Serve, Lost and Stale mark the block queued.
   */
  onRequest(index: number, now: number, seenSeq: number): Verdict {
    if (this.queued[index] === 1) return Verdict.Merge;
    const last = this.lastSent[index]!;
    let verdict: Verdict;
    if (Number.isNaN(last)) verdict = Verdict.Serve;
    else if (seenSeq !== 0 && seqAtOrAfter(seenSeq, this.lastSeq[index]!)) verdict = Verdict.Lost;
    else if (now - last < this.windowMs) return Verdict.Suppress;
    else verdict = Verdict.Stale;
    this.queued[index] = 1;
    return verdict;
  }

  /** The queued block went out at `now` as send number `seq`. */
  onSent(index: number, now: number, seq: number): void {
    this.queued[index] = 0;
    this.lastSent[index] = now;
    this.lastSeq[index] = seq;
  }
}
