/**
 * Unicast TCP fallback for networks without multicast. Same messages, same
 * MAC, same client interface; each client gets its own copy of every block it
 * asks for, so the parent's host sends clients x working set instead of
 * roughly one working set. TCP gives ordering, delivery and flow control, so
 * there are no retransmissions, lockstep detection or rate limits here.
 */
import net from 'node:net';
import { BlockCollector } from './collector.js';
import { FrameReader } from './framing.js';
import { randomBytes } from 'node:crypto';
import { ReplayGuard } from './replay.js';
import { BlockReplayGuard } from './block-seal.js';
import { type Session, wireKeys } from './session.js';
import type { BlockSource } from './source.js';
import type { BatchHandler, BlockClient, ClientStats, Log, ServerStats } from './types.js';
import {
  BLOCK_OVERHEAD_BYTES, DropReason, HEADER_BYTES, MAC_BYTES, MessageType, REQUEST_BODY_BYTES, type WireKeys, decode, encodeBlock,
  encodeRequest, newDropCounters,
} from './wire.js';

export interface TcpServerOptions {
  log?: Log;
}

export class TcpBlockServer {
  private readonly keys: WireKeys;
  private readonly connections = new Set<net.Socket>();
  private readonly counters = { requestsReceived: 0, blocksSent: 0, bytesSent: 0 };
  private readonly drops = newDropCounters();
  /** One for all connections: a request recorded on one is refused on another. */
  private readonly replay = new ReplayGuard();

  private constructor(
    readonly session: Session,
    private readonly source: BlockSource,
    private readonly server: net.Server,
    private readonly opts: TcpServerOptions,
  ) {
    this.keys = wireKeys(session);
    server.on('connection', (sock) => this.serve(sock));
  }

  /** Listen on the session's server address; `server.session` carries the bound port. */
  static async start(session: Session, source: BlockSource, opts: TcpServerOptions = {}): Promise<TcpBlockServer> {
    if (source.count !== session.blockCount) {
      throw new RangeError(`source has ${source.count} blocks, session says ${session.blockCount}`);
    }
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(session.tcpPort, session.serverAddress, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as net.AddressInfo).port;
    return new TcpBlockServer({ ...session, tcpPort: port }, source, server, opts);
  }

  stats(): ServerStats {
    return {
      transport: 'tcp',
      ...this.counters,
      resends: 0, losses: 0, stale: 0, merged: 0, suppressed: 0, rateCuts: 0, rateLimit: 0, txRate: 0,
      drops: { ...this.drops },
    };
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private serve(sock: net.Socket): void {
    this.connections.add(sock);
    sock.setNoDelay(true);
    const reader = new FrameReader(HEADER_BYTES + REQUEST_BODY_BYTES + MAC_BYTES);
    sock.on('close', () => this.connections.delete(sock));
    sock.on('error', (err) => this.opts.log?.(`mcdist tcp server: connection error: ${err.message}`));
    sock.on('data', (chunk: Buffer) => {
      const r = reader.push(chunk);
      if (!r.ok) {
        // The stream is out of step; nothing after this point can be trusted.
        this.drops[r.reason]++;
        sock.destroy();
        return;
      }
      for (const frame of r.frames) this.answer(sock, frame);
      // Stop reading while the client is slow to take its replies.
      if (sock.writableNeedDrain) {
        sock.pause();
        sock.once('drain', () => sock.resume());
      }
    });
  }

  private answer(sock: net.Socket, frame: Buffer): void {
    const d = decode(frame, this.keys, this.session.blockCount);
    if (!d.ok) {
      this.drops[d.reason]++;
      return;
    }
    if (d.msg.type !== MessageType.Request) {
      this.drops[DropReason.UnexpectedType]++;
      return;
    }
    if (!this.replay.admit(d.msg.clientId, d.msg.counter)) {
      this.drops.replayed++;
      return;
    }
    this.counters.requestsReceived++;
    const index = d.msg.index;
    let data: Buffer | Promise<Buffer>;
    try {
      data = this.source.read(index);
    } catch (err) {
      this.failRead(sock, index, err);
      return;
    }
    if (Buffer.isBuffer(data)) this.send(sock, index, data);
    else data.then((b) => this.send(sock, index, b), (err: unknown) => this.failRead(sock, index, err));
  }

  private send(sock: net.Socket, index: number, data: Buffer): void {
    if (sock.destroyed) return;
    for (const part of encodeBlock(this.keys, index, 0, data)) sock.write(part);
    this.counters.blocksSent++;
    this.counters.bytesSent += BLOCK_OVERHEAD_BYTES + data.length;
  }

  /** TCP has no retransmission: a client whose block cannot be read is cut, so its fetch fails instead of waiting. */
  private failRead(sock: net.Socket, index: number, err: unknown): void {
    this.opts.log?.(`mcdist tcp server: block ${index} cannot be read (${(err as Error).message}); dropping the connection`);
    sock.destroy();
  }
}

export interface TcpClientOptions {
  onBatch?: BatchHandler;
  batchLimit?: number;
  log?: Log;
}

export class TcpBlockClient implements BlockClient {
  readonly transport = 'tcp' as const;
  private readonly keys: WireKeys;
  private readonly blocks: BlockCollector;
  private readonly requested: Uint8Array;
  private readonly reader: FrameReader;
  private closed = false;
  private readonly counters = { requestsSent: 0, blocksReceived: 0, duplicates: 0, bytesReceived: 0 };
  private readonly drops = newDropCounters();
  private readonly clientId = randomBytes(4).readUInt32BE(0);
  private requests = 0;
  private readonly replays = new BlockReplayGuard();

  private constructor(readonly session: Session, private readonly sock: net.Socket, opts: TcpClientOptions) {
    this.keys = wireKeys(session);
    this.blocks = new BlockCollector(session.blockCount, opts.onBatch, opts.batchLimit, opts.log);
    this.requested = new Uint8Array(session.blockCount);
    this.reader = new FrameReader(BLOCK_OVERHEAD_BYTES + session.blockSize);
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (err) => opts.log?.(`mcdist tcp client: ${err.message}`));
    sock.on('close', () => {
      if (!this.closed) this.blocks.failAll(new Error('mcdist tcp: connection to server lost'));
    });
  }

  static async open(session: Session, opts: TcpClientOptions = {}): Promise<TcpBlockClient> {
    const sock = net.connect(session.tcpPort, session.serverAddress);
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve();
      });
    });
    return new TcpBlockClient(session, sock, opts);
  }

  fetch(index: number): Promise<Buffer> {
    if (this.closed || this.sock.destroyed) return Promise.reject(new Error('mcdist tcp client is closed'));
    if (!Number.isInteger(index) || index < 0 || index >= this.session.blockCount) {
      return Promise.reject(new RangeError(`block ${index} is outside 0..${this.session.blockCount - 1}`));
    }
    const have = this.blocks.get(index);
    if (have) return Promise.resolve(have);
    const p = this.blocks.wait(index);
    if (this.requested[index] === 0) {
      this.requested[index] = 1;
      this.sendRequest(index);
    }
    return p;
  }

  private sendRequest(index: number): void {
    this.counters.requestsSent++;
    for (const part of encodeRequest(this.keys, {
      index, seenSeq: 0, firstSeq: 0, clientId: this.clientId, rxRateKiBps: 0, attempt: 0, quietMs: 0, counter: ++this.requests,
    })) {
      this.sock.write(part);
    }
  }

  has(index: number): boolean {
    return this.blocks.has(index);
  }

  stats(): ClientStats {
    return {
      transport: this.transport,
      ...this.counters,
      retransmits: 0,
      prefetched: 0,
      batches: this.blocks.batches,
      rxRate: 0,
      retransmitMs: 0,
      drops: { ...this.drops },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.blocks.flush();
    this.closed = true;
    this.blocks.failAll(new Error('mcdist tcp client is closed'));
    if (this.sock.closed) return; // the server dropped it already
    await new Promise<void>((resolve) => {
      this.sock.once('close', () => resolve());
      this.sock.destroy();
    });
  }

  private onData(chunk: Buffer): void {
    const r = this.reader.push(chunk);
    if (!r.ok) {
      this.drops[r.reason]++;
      this.sock.destroy();
      return;
    }
    for (const frame of r.frames) {
      this.counters.bytesReceived += frame.length;
      const d = decode(frame, this.keys, this.session.blockCount);
      if (!d.ok) {
        this.drops[d.reason]++;
        // TCP will not resend it for us. The index is unauthenticated, but
        // asking again for a block we asked for and lack is harmless.
        const claimed = frame.readUInt32BE(12); // header: block index
        if (claimed < this.session.blockCount && this.requested[claimed] === 1 && !this.blocks.received(claimed)) {
          this.sendRequest(claimed);
        }
        continue;
      }
      if (d.msg.type !== MessageType.Block) {
        this.drops[DropReason.UnexpectedType]++;
        continue;
      }
      if (!this.replays.admit(d.msg.nonce)) {
        this.drops[DropReason.Replayed]++;
        continue;
      }
      if (this.blocks.add(d.msg.index, d.msg.data)) this.counters.blocksReceived++;
      else this.counters.duplicates++;
    }
  }
}
