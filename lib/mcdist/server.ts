/**
 * mcdist server: runs on the parent's host and answers block requests by
 * multicasting the block to the session's group, so one reply serves every
 * clone that needs it. There is no ordering, atomicity or delivery guarantee:
 * requests are queued first come first served, lockstep duplicates are
 * merged, and the send rate is shaped by the flow control in rate.ts.
 */
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { LockstepFilter, Verdict } from './lockstep.js';
import { ClientRates, DEFAULT_RATE_LIMIT, RATE_TICK_MS, RateEstimator, RateLimit, type RateLimitOptions } from './rate.js';
import { ReplayGuard } from './replay.js';
import { type Session, wireKeys } from './session.js';
import type { BlockSource } from './source.js';
import type { Log, ServerStats } from './types.js';
import {
  BLOCK_OVERHEAD_BYTES, MessageType, type WireKeys, admitDatagram, encodeBlock, newDropCounters,
} from './wire.js';

export interface McdistServerOptions {
  /** Lockstep window; default the clients' retransmit timeout. */
  lockstepWindowMs?: number;
  rateLimit?: Partial<RateLimitOptions>;
  sendBufferSize?: number;
  log?: Log;
  /** TESTS ONLY: drop this share of received requests before looking at them. */
  testDropRate?: number;
}

/** Datagrams handed to the kernel but not yet sent before the pump waits. */
const MAX_SEND_QUEUE = 64;
/**
 * Sends per event loop turn. Each multicast send can cost the kernel a lot
 * (it fans out to every local receiver in our context), and requests must be
 * read while they are fresh: lockstep decisions assume little delay between a
 * request's arrival and its processing.
 */
const MAX_SENDS_PER_TURN = 16;
/** Queued blocks whose reads run ahead of the send (for sources that return a promise). */
const READ_AHEAD = 32;

export class McdistServer {
  private readonly keys: WireKeys;
  private readonly lockstep: LockstepFilter;
  private readonly limit: RateLimit;
  private readonly tx = new RateEstimator(performance.now());
  private readonly clientRates = new ClientRates();
  private readonly replay = new ReplayGuard();
  /** FIFO of block indices to send; `head` is the next to go. */
  private queue: number[] = [];
  private head = 0;
  /** Blocks read (or being read: null) for the queue's first READ_AHEAD entries; a block is queued at most once. */
  private readonly reads = new Map<number, Buffer | Error | null>();
  private pumpTimer: NodeJS.Timeout | null = null;
  private pumpImmediate = false;
  private readonly rateTimer: NodeJS.Timeout;
  private lastRateTick = performance.now();
  private closed = false;
  private readonly counters = {
    requestsReceived: 0, blocksSent: 0, resends: 0, losses: 0, stale: 0, merged: 0, suppressed: 0, bytesSent: 0,
  };
  /** Send counter; the first send is 1 so that 0 can mean "nothing seen". */
  private seq = 0;
  private readonly drops = newDropCounters();

  /**
   * @param socket bound socket for requests and multicast sends, or null to
   * drive the server through handleDatagram() alone (tests).
   */
  constructor(
    readonly session: Session,
    private readonly source: BlockSource,
    private readonly socket: dgram.Socket | null,
    private readonly opts: McdistServerOptions = {},
  ) {
    if (source.count !== session.blockCount) {
      throw new RangeError(`source has ${source.count} blocks, session says ${session.blockCount}`);
    }
    this.keys = wireKeys(session);
    this.lockstep = new LockstepFilter(session.blockCount, opts.lockstepWindowMs ?? session.retransmitMs);
    this.limit = new RateLimit(performance.now(), { ...DEFAULT_RATE_LIMIT, ...opts.rateLimit });
    socket?.on('message', (buf) => this.handleDatagram(buf));
    socket?.on('error', (err) => opts.log?.(`mcdist server: socket error: ${err.message}`));
    this.rateTimer = setInterval(() => this.tickRates(), RATE_TICK_MS).unref();
  }

  /**
   * Bind the request port on the session's server address and return a
   * running server; `server.session` carries the bound port.
   */
  static async start(session: Session, source: BlockSource, opts: McdistServerOptions = {}): Promise<McdistServer> {
    const socket = dgram.createSocket({
      type: 'udp4',
      sendBufferSize: opts.sendBufferSize ?? 4 * 1024 * 1024,
      recvBufferSize: 1024 * 1024,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(session.requestPort, session.serverAddress, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      socket.setMulticastInterface(session.serverAddress);
      socket.setMulticastTTL(session.ttl);
      // Clones on the parent's own host receive the group through loopback.
      socket.setMulticastLoopback(true);
    } catch (err) {
      try {
        socket.close();
      } catch {
        // the failed bind already closed it
      }
      throw err;
    }
    const bound = { ...session, requestPort: socket.address().port };
    return new McdistServer(bound, source, socket, opts);
  }

  /** Feed one datagram as if it came from the socket. Never throws. */
  handleDatagram(buf: Buffer, now = performance.now()): void {
    const msg = admitDatagram(buf, this.keys, this.session.blockCount, MessageType.Request, this.drops, this.opts.testDropRate);
    if (!msg) return;
    if (!this.replay.admit(msg.clientId, msg.counter)) {
      this.drops.replayed++;
      return;
    }
    this.counters.requestsReceived++;
    this.clientRates.report(msg.clientId, msg.rxRateKiBps * 1024, now);
    switch (this.lockstep.onRequest(msg.index, now, msg)) {
      case Verdict.Merge:
        this.counters.merged++;
        return;
      case Verdict.Suppress:
        this.counters.suppressed++;
        return;
      case Verdict.Lost:
        // A client got later sends but not this one: we are sending too fast for someone.
        this.counters.losses++;
        if (this.limit.onLoss(now, this.clientRates.mean(now))) {
          this.opts.log?.(`mcdist server: loss on block ${msg.index}, rate limit now ${Math.round(this.limit.bytesPerSecond / 1024)} KiB/s`);
        }
        this.counters.resends++;
        break;
      case Verdict.Stale:
        this.counters.stale++;
        this.counters.resends++;
        break;
      case Verdict.Serve:
        break;
    }
    this.queue.push(msg.index);
    this.schedulePump(0);
  }

  stats(): ServerStats {
    return {
      transport: 'multicast',
      ...this.counters,
      rateCuts: this.limit.cuts,
      rateLimit: this.limit.bytesPerSecond,
      txRate: this.tx.bytesPerSecond,
      drops: { ...this.drops },
    };
  }

  /** Requests queued and not yet sent. */
  get backlog(): number {
    return this.queue.length - this.head;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.reads.clear();
    clearInterval(this.rateTimer);
    if (this.pumpTimer) clearTimeout(this.pumpTimer);
    if (this.socket) await new Promise<void>((resolve) => this.socket!.close(() => resolve()));
  }

  private tickRates(): void {
    const now = performance.now();
    this.tx.tick(now);
    this.limit.tick(now - this.lastRateTick);
    this.lastRateTick = now;
  }

  private schedulePump(delayMs: number): void {
    if (this.closed || !this.socket) return;
    if (delayMs <= 0) {
      if (this.pumpImmediate) return;
      if (this.pumpTimer) {
        clearTimeout(this.pumpTimer);
        this.pumpTimer = null;
      }
      this.pumpImmediate = true;
      setImmediate(() => {
        this.pumpImmediate = false;
        this.pump();
      });
    } else if (!this.pumpTimer && !this.pumpImmediate) {
      this.pumpTimer = setTimeout(() => {
        this.pumpTimer = null;
        this.pump();
      }, Math.max(1, Math.ceil(delayMs)));
    }
  }

  /** Send queued blocks while the rate limit and the socket's queue allow. */
  private pump(): void {
    const socket = this.socket;
    if (this.closed || !socket) return;
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      // Under sustained load the queue never drains; drop the consumed prefix now and then.
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    for (let sent = 0; this.head < this.queue.length; sent++) {
      if (sent === MAX_SENDS_PER_TURN) {
        this.schedulePump(0); // after the poll phase has read new requests
        return;
      }
      if (socket.getSendQueueCount() >= MAX_SEND_QUEUE) {
        this.schedulePump(1);
        return;
      }
      this.readAhead();
      const index = this.queue[this.head]!;
      const data = this.reads.get(index);
      if (data === null || data === undefined) return; // its read's completion pumps again
      if (data instanceof Error) {
        this.reads.delete(index);
        this.head++;
        this.lockstep.onDropped(index);
        this.opts.log?.(`mcdist server: block ${index} not sent: ${data.message}`);
        continue;
      }
      const now = performance.now();
      const bytes = BLOCK_OVERHEAD_BYTES + data.length;
      if (!this.limit.take(now, bytes)) {
        this.schedulePump(this.limit.msUntil(now, bytes));
        return;
      }
      this.head++;
      this.reads.delete(index);
      this.seq = (this.seq + 1) >>> 0 || 1;
      this.lockstep.onSent(index, now, this.seq);
      this.counters.blocksSent++;
      this.counters.bytesSent += bytes;
      this.tx.add(bytes);
      socket.send(encodeBlock(this.keys, index, this.seq, data), this.session.groupPort, this.session.group, (err) => {
        // A failed send is a loss like any other: the client will ask again.
        if (err) this.opts.log?.(`mcdist server: send of block ${index} failed: ${err.message}`);
      });
    }
    // Drained: drop the consumed prefix so the queue does not grow forever.
    this.queue = [];
    this.head = 0;
  }

  /** Starts the reads of the next queued blocks; a source's promise pumps again when it settles. */
  private readAhead(): void {
    const end = Math.min(this.queue.length, this.head + READ_AHEAD);
    for (let i = this.head; i < end; i++) {
      const index = this.queue[i]!;
      if (this.reads.has(index)) continue;
      let r: Buffer | Promise<Buffer>;
      try {
        r = this.source.read(index);
      } catch (err) {
        this.reads.set(index, err as Error);
        continue;
      }
      if (Buffer.isBuffer(r)) {
        this.reads.set(index, r);
        continue;
      }
      this.reads.set(index, null);
      r.then(
        (b) => this.settleRead(index, b),
        (err: unknown) => this.settleRead(index, err instanceof Error ? err : new Error(String(err))),
      );
    }
  }

  private settleRead(index: number, result: Buffer | Error): void {
    if (this.closed || this.reads.get(index) !== null) return;
    this.reads.set(index, result);
    this.schedulePump(0);
  }
}
