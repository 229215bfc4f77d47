/**
 * Lockstep detection.
 *
 * Clones of one parent run the same code and fault on the same pages at
 * nearly the same time. One multicast reply satisfies all of them, so the
 * server answers the first request and drops the rest. For a request of a
 * block that was sent before, the question is whether the requester lost the
 * reply, asked before the reply reached it, or was not listening when it went
 * out. Every BLOCK carries a send sequence number, and every request says
 * which sequence numbers its client has received (the first, from when it
 * started listening, and the highest) and how long it has heard nothing. A
 * LAN does not reorder one sender's datagrams, so, with L the sequence of the
 * block's last send:
 *
 *   - queued                 -> Merge: the queued send answers it too;
 *   - first <= L <= highest  -> Lost: the client heard what came before and
 *                               after, not this. Send again, tell flow control;
 *   - L < first              -> Stale: the client joined later. Send again;
 *                               a late joiner is not congestion;
 *   - highest < L            -> the reply is on its way or waiting in the
 *                               client's socket buffer behind a busy event
 *                               loop: Suppress. Unless the client has heard
 *                               nothing for `windowMs` and L is at least that
 *                               old: then it lost the reply and everything
 *                               after it (Stale). Nothing received at all is
 *                               judged the same way.
 *
 * Only that last case needs a clock, and it uses the client's quiet time
 * rather than the request's arrival time: a server that falls behind reads
 * requests late, which must not make replies still in flight look lost.
 * `windowMs` is the clients' minimum retransmit timeout, so a request
 * repeated because of a loss is served again at its next retransmission.
 */
import { seqAtOrAfter } from './wire.js';

export const Verdict = {
  /** First request for this block: send it. */
  Serve: 'serve',
  /** The requester missed the last send: send again, and count a loss. */
  Lost: 'lost',
  /** The requester was not listening, or has lost everything since: send again. */
  Stale: 'stale',
  /** Already queued: the queued send answers this request too. */
  Merge: 'merge',
  /** The reply is on its way. */
  Suppress: 'suppress',
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** What a request says about its client's view of the group. */
export interface RequesterView {
  /** First and highest BLOCK sequence received; 0 = none yet. */
  firstSeq: number;
  seenSeq: number;
  /** Milliseconds since the client last received a BLOCK. */
  quietMs: number;
}

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

  /** Decide what to do with a request. Serve, Lost and Stale mark the block queued. */
  onRequest(index: number, now: number, view: RequesterView): Verdict {
    if (this.queued[index] === 1) return Verdict.Merge;
    const verdict = this.judge(index, now, view);
    if (verdict !== Verdict.Suppress) this.queued[index] = 1;
    return verdict;
  }

  /** The queued block went out at `now` as send number `seq`. */
  onSent(index: number, now: number, seq: number): void {
    this.queued[index] = 0;
    this.lastSent[index] = now;
    this.lastSeq[index] = seq;
  }

  /** The queued block will not be sent after all (its read failed): the next request is judged afresh. */
  onDropped(index: number): void {
    this.queued[index] = 0;
  }

  private judge(index: number, now: number, view: RequesterView): Verdict {
    const sentAt = this.lastSent[index]!;
    if (Number.isNaN(sentAt)) return Verdict.Serve;
    const seq = this.lastSeq[index]!;
    if (view.seenSeq !== 0) {
      if (!seqAtOrAfter(seq, view.firstSeq)) return Verdict.Stale;
      if (seqAtOrAfter(view.seenSeq, seq)) return Verdict.Lost;
    }
    const starved = view.quietMs >= this.windowMs && now - sentAt >= this.windowMs;
    return starved ? Verdict.Stale : Verdict.Suppress;
  }
}
