/**
 * mcdist client: joins the session's group, requests blocks by unicast UDP
 * and keeps every verified block that arrives, asked for or not. A block one
 * clone faults on is usually the block its siblings fault on next, so another
 * clone's reply is a free prefetch.
 *
 * Requests are retransmitted until the block arrives, after a timeout that
 * starts at `session.retransmitMs` and follows the measured reply time; each
 * request carries the client's receive rate for the server's flow control.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { BlockCollector } from './collector.js';
import { RATE_TICK_MS, RateEstimator } from './rate.js';
import { RetransmitTimer } from './retransmit.js';
import { BlockReplayGuard } from './block-seal.js';
import { type Session, wireKeys } from './session.js';
import type { BatchHandler, BlockClient, ClientStats, Log } from './types.js';
import {
  MessageType, type WireKeys, admitDatagram, encodeRequest, newDropCounters, seqAtOrAfter,
} from './wire.js';

export interface McdistClientOptions {
  /** Local address of the interface that reaches the server; the kernel picks one if unset. */
  interfaceAddress?: string;
  onBatch?: BatchHandler;
  /** Hand a batch over once it holds this many blocks (default 1024). */
  batchLimit?: number;
  /** Reject a fetch when its block has not arrived after this long. */
  giveUpMs?: number;
  /** Socket receive buffer; the kernel caps it at net.core.rmem_max. */
  recvBufferSize?: number;
  log?: Log;
  /**
   * TESTS ONLY: drop this share of received datagrams before looking at them,
   * to exercise retransmission and flow control without sch_netem.
   */
  testDropRate?: number;
}

/**
 * Deliberately modest: a deep buffer turns overload into seconds of delay
 * before it turns into the loss that flow control reacts to.
 */
export const DEFAULT_RECV_BUFFER = 1024 * 1024;

interface Outstanding {
  attempt: number;
  firstSent: number;
  lastSent: number;
}

export class McdistClient implements BlockClient {
  readonly transport = 'multicast' as const;
  private readonly keys: WireKeys;
  private readonly clientId = randomBytes(4).readUInt32BE(0);
  /** Request number, one per request sent (retransmissions too): the server takes each once. */
  private requests = 0;
  private readonly blocks: BlockCollector;
  private readonly outstanding = new Map<number, Outstanding>();
  /** Blocks this client asked for, to tell its own replies from prefetch. */
  private readonly requested: Uint8Array;
  private readonly rx = new RateEstimator(performance.now());
  private readonly rto: RetransmitTimer;
  /** First and highest BLOCK sequence received, reported in requests (see lockstep.ts). */
  private firstSeq = 0;
  private seenSeq = 0;
  /**
   * Start of the current silence: when a BLOCK last arrived, or when the
   * client started waiting with nothing outstanding (an idle client is not
   * starved, only one that waits and hears nothing).
   */
  private quietSince = performance.now();
  private readonly timers: NodeJS.Timeout[] = [];
  private closed = false;
  private readonly counters = {
    requestsSent: 0, retransmits: 0, blocksReceived: 0, prefetched: 0, duplicates: 0, bytesReceived: 0,
  };
  private readonly drops = newDropCounters();
  /** nonces of the blocks taken: a recorded block sent again is dropped */
  private readonly replays = new BlockReplayGuard();

  /**
   * @param socket a bound socket that has joined the group, or null to drive
   * the client through handleDatagram() alone (tests).
   */
  constructor(
    readonly session: Session,
    private readonly socket: dgram.Socket | null,
    private readonly opts: McdistClientOptions = {},
  ) {
    this.keys = wireKeys(session);
    this.rto = new RetransmitTimer(session.retransmitMs);
    this.blocks = new BlockCollector(session.blockCount, opts.onBatch, opts.batchLimit, opts.log);
    this.requested = new Uint8Array(session.blockCount);
    socket?.on('message', (buf) => this.handleDatagram(buf));
    socket?.on('error', (err) => opts.log?.(`mcdist client: socket error: ${err.message}`));
    this.timers.push(setInterval(() => this.rx.tick(performance.now()), RATE_TICK_MS).unref());
    // The scan runs from setImmediate, after the event loop's I/O phase: when
    // the process was descheduled, the timer fires first, and replies already
    // in the socket buffer must not look lost.
    this.timers.push(
      setInterval(() => setImmediate(() => this.retransmit(performance.now())), Math.max(1, session.retransmitMs / 4))
        .unref(),
    );
  }

  /** Bind the group port, join the group and return a ready client. */
  static async open(session: Session, opts: McdistClientOptions = {}): Promise<McdistClient> {
    const socket = dgram.createSocket({
      type: 'udp4',
      reuseAddr: true, // every clone on a host binds the same group port
      recvBufferSize: opts.recvBufferSize ?? DEFAULT_RECV_BUFFER,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(session.groupPort, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      socket.addMembership(session.group, opts.interfaceAddress);
    } catch (err) {
      try {
        socket.close();
      } catch {
        // the failed bind already closed it
      }
      throw err;
    }
    return new McdistClient(session, socket, opts);
  }

  fetch(index: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error('mcdist client is closed'));
    if (!Number.isInteger(index) || index < 0 || index >= this.session.blockCount) {
      return Promise.reject(new RangeError(`block ${index} is outside 0..${this.session.blockCount - 1}`));
    }
    const have = this.blocks.get(index);
    if (have) return Promise.resolve(have);
    const p = this.blocks.wait(index);
    if (!this.outstanding.has(index)) {
      const now = performance.now();
      if (this.outstanding.size === 0) this.quietSince = now;
      this.outstanding.set(index, { attempt: 0, firstSent: now, lastSent: now });
      this.requested[index] = 1;
      this.sendRequest(index, 0);
    }
    return p;
  }

  has(index: number): boolean {
    return this.blocks.has(index);
  }

  /** Feed one datagram as if it came from the socket. Never throws. */
  handleDatagram(buf: Buffer): void {
    const msg = admitDatagram(buf, this.keys, this.session.blockCount, MessageType.Block, this.drops, this.opts.testDropRate);
    if (!msg) return;
    if (!this.replays.admit(msg.nonce)) {
      this.drops.replayed++;
      return;
    }
    this.rx.add(buf.length);
    this.quietSince = performance.now();
    this.counters.bytesReceived += buf.length;
    const { index, seq, data } = msg;
    if (this.firstSeq === 0) this.firstSeq = seq;
    if (this.seenSeq === 0 || seqAtOrAfter(seq, this.seenSeq)) this.seenSeq = seq;
    if (!this.blocks.add(index, data)) {
      this.counters.duplicates++;
      return;
    }
    this.counters.blocksReceived++;
    if (this.requested[index] === 0) this.counters.prefetched++;
    const o = this.outstanding.get(index);
    if (o) {
      // Karn: only a reply to a request sent once is an unambiguous sample.
      if (o.attempt === 0) this.rto.sample(performance.now() - o.firstSent);
      this.outstanding.delete(index);
    }
  }

  stats(): ClientStats {
    return {
      transport: this.transport,
      ...this.counters,
      batches: this.blocks.batches,
      rxRate: this.rx.bytesPerSecond,
      retransmitMs: this.rto.ms,
      drops: { ...this.drops },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.blocks.flush();
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.outstanding.clear();
    this.blocks.failAll(new Error('mcdist client is closed'));
    if (this.socket) await new Promise<void>((resolve) => this.socket!.close(() => resolve()));
  }

  private sendRequest(index: number, attempt: number): void {
    if (!this.socket || this.closed) return;
    const msg = encodeRequest(this.keys, {
      index,
      seenSeq: this.seenSeq,
      firstSeq: this.firstSeq,
      quietMs: performance.now() - this.quietSince,
      clientId: this.clientId,
      rxRateKiBps: this.rx.bytesPerSecond / 1024,
      attempt,
      counter: ++this.requests,
    });
    this.counters.requestsSent++;
    if (attempt > 0) this.counters.retransmits++;
    this.socket.send(msg, this.session.requestPort, this.session.serverAddress, (err) => {
      // A failed send is a lost request: the retransmit timer covers it.
      if (err) this.opts.log?.(`mcdist client: request send failed: ${err.message}`);
    });
  }

  private retransmit(now: number): void {
    const giveUpMs = this.opts.giveUpMs ?? 30_000;
    const rto = this.rto.ms;
    let timedOut = false;
    for (const [index, o] of this.outstanding) {
      if (now - o.firstSent > giveUpMs) {
        this.outstanding.delete(index);
        this.blocks.fail(index, new Error(`mcdist: block ${index} not received after ${giveUpMs} ms`));
      } else if (now - o.lastSent >= rto) {
        o.attempt++;
        o.lastSent = now;
        this.sendRequest(index, o.attempt);
        timedOut = true;
      }
    }
    if (timedOut) this.rto.onTimeout();
  }
}
