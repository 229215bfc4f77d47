// The memserver: serves the parent's immutable memory image to the clones' memtaps, page by
// gfn, over TCP (protocol.ts). It also tells each clone, once, which pages to page out
// (WELCOME) and which to load before it runs. It ends itself when every clone said BYE.
// A client proves it holds the fork's key without sending it, and so does the server; then every
// frame is sealed with keys of that connection alone (secure.ts), unless `insecurePlaintext`.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Descriptor } from '../descriptor/format.js';
import { checkImage } from '../descriptor/memory-image.js';
import type { GfnRange } from '../xen/native.js';
import { eagerGfns } from './eager-set.js';
import { ImageIndex } from './image-index.js';
import {
  CHALLENGE_HEAD_BYTES, ErrorCode, FrameReader, MAX_FRAME, MsgType, ProtocolError, TOKEN_BYTES, VERSION, type Frame, decodeBye, decodeEcho,
  decodeGet, decodeHello, decodeProof, encodeChallenge, encodeError, encodeHello, encodePong, encodeWelcome, pagesFrame,
} from './protocol.js';
import { FLAG_PLAINTEXT, NONCE_BYTES, Opener, Sealer, TAG_BYTES, loadFrameCipher, proofsEqual, sessionKeys } from './secure.js';

export interface MemServerOptions {
  descriptor: Descriptor;
  imagePath: string;
  token: Buffer;
  /**
   * Frames after the handshake travel unsealed: the parent's memory in clear, no integrity (the
   * handshake still proves the key both ways). For trusted networks only; off by default.
   */
  insecurePlaintext?: boolean;
  /** default 127.0.0.1; the address of the cluster's interface for clones on other hosts */
  host?: string;
  /** 0: any free port */
  port?: number;
  /** the server closes itself once this many distinct vmids said BYE */
  clones: number;
  eagerPagesPerCpu?: number;
  log?: (event: Record<string, unknown>) => void;
}

export interface MemStats {
  hellos: number;
  gets: number;
  pages: number;
  /** bytes sent */
  bytes: number;
  errors: number;
  byes: number;
  pings: number;
}

export interface ConnectionStats extends MemStats {
  remote: string;
  vmid?: number;
}

export interface ServePlan {
  pages: number;
  zeroPages: number;
  evictPages: number;
  eagerPages: number;
  evict: GfnRange[];
  eager: number[];
}

// HVM params naming pages the builder sets up itself: STORE, CONSOLE, PAGING/MONITOR/SHARING
// rings, IOREQ, BUFIOREQ; IDENT_PT holds an address, not a gfn.
const SPECIAL_PARAMS = new Set([1, 17, 27, 28, 29, 5, 6]);
const IDENT_PT = 12;
const HELLO_TIMEOUT_MS = 10_000;
/** Before its PROOF a peer has proved nothing: it may send no more than a HELLO frame... */
const HELLO_FRAME_BYTES = encodeHello({ nonce: Buffer.alloc(NONCE_BYTES), vmid: 0 }).length;
/** ...and hold only this many such connections per address (a host's memtaps say HELLO at once), */
const MAX_UNAUTHENTICATED_PER_PEER = 32;
/** and this many in all. */
const MAX_UNAUTHENTICATED = 512;
const LINGER_MS = 5_000; // after ERROR or BYE, how long a peer may keep its side open
const QUEUE_PAUSE = 32; // frames queued before we stop reading the socket

const newStats = (): MemStats => ({ hellos: 0, gets: 0, pages: 0, bytes: 0, errors: 0, byes: 0, pings: 0 });

interface Conn {
  socket: net.Socket;
  stats: ConnectionStats;
  reader: FrameReader;
  /** frames after their length field, opened in order as they are handled */
  queue: (Buffer | ProtocolError)[];
  /** HELLO answered: what the PROOF must be, and the keys it unlocks */
  pending?: { vmid: number; proof: Buffer; rx?: Opener; tx?: Sealer };
  /** set once the PROOF is right (none with insecurePlaintext) */
  rx?: Opener;
  tx?: Sealer;
  busy: boolean;
  /** ERROR or BYE sent/received: nothing more is read or answered */
  ended: boolean;
  /** the peer sent FIN: we hang up once its requests are answered */
  peerEnded: boolean;
  address: string;
  /** still counted among its address's connections without HELLO */
  counted: boolean;
  timer?: NodeJS.Timeout;
}

export class MemServer extends EventEmitter {
  // Half-open: a peer may send its last requests and FIN; it still gets the answers.
  private readonly server = net.createServer({ allowHalfOpen: true });
  private readonly conns = new Set<Conn>();
  /** connections that have not said HELLO yet, per remote address */
  private readonly unauthenticated = new Map<string, number>();
  private readonly totals = newStats();
  private readonly finishedVmids = new Set<number>();
  private index?: ImageIndex;
  private welcome?: Buffer;
  private summary?: ServePlan;
  private closing?: Promise<void>;

  constructor(private readonly o: MemServerOptions) {
    super();
    if (o.token.length !== TOKEN_BYTES) throw new RangeError(`memserver token must be ${TOKEN_BYTES} bytes, got ${o.token.length}`);
    if (!Number.isInteger(o.clones) || o.clones < 1) throw new RangeError(`memserver clones must be a positive integer, got ${o.clones}`);
    if (!o.insecurePlaintext) loadFrameCipher();
    this.server.on('connection', (s) => this.accept(s));
    this.server.on('error', (e) => this.log({ event: 'server-error', message: e.message }));
  }

  get plan(): ServePlan {
    if (!this.summary) throw new Error('memserver: plan() before listen()');
    return this.summary;
  }

  /** Checks and scans the image, then listens; resolves with the bound address. */
  async listen(): Promise<{ host: string; port: number }> {
    const d = this.o.descriptor;
    checkImage(this.o.imagePath, d.meta.memory.imageId, d.meta.memory.pages);
    const index = new ImageIndex(this.o.imagePath, d.memoryMap);
    this.index = index;
    try {
      this.summary = await buildPlan(d, index, this.o.eagerPagesPerCpu ?? 128);
      this.welcome = encodeWelcome({
        pages: index.pages, imageId: Buffer.from(d.meta.memory.imageId!, 'hex'), evict: this.summary.evict, eager: this.summary.eager,
      });
      if (this.closing) throw new Error('memserver closed while starting');
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(this.o.port ?? 0, this.o.host ?? '127.0.0.1', () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      index.close();
      throw e;
    }
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  stats(): MemStats & { connections: ConnectionStats[]; finishedVmids: number[] } {
    return { ...this.totals, connections: [...this.conns].map((c) => ({ ...c.stats })), finishedVmids: [...this.finishedVmids] };
  }

  /** Idempotent: closes every connection, the listener and the image. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const c of this.conns) c.socket.destroy();
      if (this.server.listening) await new Promise<void>((r) => this.server.close(() => r()));
      this.index?.close();
    })();
    return this.closing;
  }

  private log(event: Record<string, unknown>): void {
    this.o.log?.(event);
  }

  private count(c: Conn, key: keyof MemStats, n = 1): void {
    c.stats[key] += n;
    this.totals[key] += n;
  }

  private accept(socket: net.Socket): void {
    if (this.closing) return void socket.destroy();
    const address = socket.remoteAddress ?? '?';
    const fromPeer = this.unauthenticated.get(address) ?? 0;
    let total = 0;
    for (const n of this.unauthenticated.values()) total += n;
    if (fromPeer >= MAX_UNAUTHENTICATED_PER_PEER || total >= MAX_UNAUTHENTICATED) {
      this.log({ event: 'connection-refused', remote: address, reason: `too many connections without HELLO (${fromPeer} from this address, ${total} in all)` });
      return void socket.destroy();
    }
    this.unauthenticated.set(address, fromPeer + 1);
    const c: Conn = {
      socket, reader: new FrameReader(), queue: [], busy: false, ended: false, peerEnded: false, address, counted: true,
      stats: { ...newStats(), remote: `${socket.remoteAddress}:${socket.remotePort}` },
    };
    this.conns.add(c);
    socket.setNoDelay(true);
    c.timer = setTimeout(() => this.refuse(c, new ProtocolError(ErrorCode.Malformed, `no HELLO within ${HELLO_TIMEOUT_MS} ms`)), HELLO_TIMEOUT_MS);
    socket.on('data', (chunk: Buffer) => this.receive(c, chunk));
    socket.on('end', () => {
      c.peerEnded = true;
      if (!c.busy) c.socket.end();
    });
    socket.on('error', (e) => this.log({ event: 'connection-error', remote: c.stats.remote, message: e.message }));
    socket.on('close', () => {
      clearTimeout(c.timer);
      this.conns.delete(c);
      this.authenticated(c);
    });
  }

  /** The connection no longer counts against its address's unauthenticated share. */
  private authenticated(c: Conn): void {
    if (!c.counted) return;
    c.counted = false;
    const n = (this.unauthenticated.get(c.address) ?? 1) - 1;
    if (n > 0) this.unauthenticated.set(c.address, n);
    else this.unauthenticated.delete(c.address);
  }

  private receive(c: Conn, chunk: Buffer): void {
    if (c.ended) return; // draining what the peer still sends after ERROR or BYE
    c.queue.push(...c.reader.pushRecords(chunk));
    if (c.stats.vmid === undefined && c.queue.length === 0 && c.reader.buffered > HELLO_FRAME_BYTES) {
      // Whatever this is, it is not a HELLO: do not keep it.
      return this.refuse(c, new ProtocolError(ErrorCode.Malformed, `the first frame must be a HELLO of ${HELLO_FRAME_BYTES} bytes`));
    }
    if (c.reader.error) {
      c.queue.push(c.reader.error); // the stream is out of step: answered after what came before
      c.ended = true;
    }
    if (c.queue.length > QUEUE_PAUSE) c.socket.pause();
    void this.drain(c);
  }

  /** Answers queued frames one at a time, in order; never throws. */
  private async drain(c: Conn): Promise<void> {
    if (c.busy) return;
    c.busy = true;
    try {
      for (let item = c.queue.shift(); item; item = c.queue.shift()) {
        if (item instanceof ProtocolError) throw item;
        await this.handle(c, this.open(c, item));
        if (c.socket.destroyed) break;
      }
    } catch (e) {
      this.refuse(c, e);
    } finally {
      c.busy = false;
      if (c.peerEnded) c.socket.end();
      else if (!c.socket.destroyed) c.socket.resume();
    }
  }

  /** A frame as it came, or opened with the connection's key; one that does not open ends it. */
  private open(c: Conn, record: Buffer): Frame {
    if (!c.rx) return { type: record[0]!, payload: record.subarray(1) };
    const f = c.rx.open(record);
    if (!f) throw new ProtocolError(ErrorCode.Malformed, 'a sealed frame failed authentication');
    return f;
  }

  private async handle(c: Conn, f: Frame): Promise<void> {
    if (c.stats.vmid === undefined) return this.handshake(c, f);
    switch (f.type) {
      case MsgType.Hello:
        throw new ProtocolError(ErrorCode.Malformed, 'second HELLO on one connection');
      case MsgType.Get: {
        const gfns = decodeGet(f.payload);
        const indices = gfns.map((g) => {
          const i = this.index!.indexOf(g);
          if (i === undefined) throw new ProtocolError(ErrorCode.UnknownGfn, `unknown gfn 0x${g.toString(16)}: not in the parent's memory`);
          return i;
        });
        // Sealed, the pages are read into the frame and encrypted where they lie.
        const room = c.tx ? TAG_BYTES : 0;
        const { frame, dataOffset } = pagesFrame(gfns, room);
        await this.index!.readInto(indices, frame, dataOffset);
        this.count(c, 'gets');
        this.count(c, 'pages', gfns.length);
        return this.send(c, frame, room > 0);
      }
      case MsgType.Ping: {
        const { nonce, payload } = decodeEcho(f.payload);
        this.count(c, 'pings');
        return this.send(c, encodePong(nonce, payload));
      }
      case MsgType.Bye: {
        const vmid = decodeBye(f.payload);
        if (vmid !== c.stats.vmid) throw new ProtocolError(ErrorCode.Malformed, `BYE for vmid ${vmid} on the connection of vmid ${c.stats.vmid}`);
        this.count(c, 'byes');
        this.finishedVmids.add(vmid);
        this.log({ event: 'bye', vmid, finished: this.finishedVmids.size, clones: this.o.clones });
        this.hangUp(c);
        if (this.finishedVmids.size >= this.o.clones) void this.finish();
        return;
      }
      default:
        throw new ProtocolError(ErrorCode.Malformed, `unknown message type ${f.type}`);
    }
  }

  /** HELLO → CHALLENGE, then PROOF → WELCOME (the first sealed frame). */
  private async handshake(c: Conn, f: Frame): Promise<void> {
    if (!c.pending) {
      if (f.type !== MsgType.Hello) throw new ProtocolError(ErrorCode.Malformed, `message type ${f.type} before HELLO`);
      const h = decodeHello(f.payload);
      const flags = this.o.insecurePlaintext ? FLAG_PLAINTEXT : 0;
      const nonce = randomBytes(NONCE_BYTES);
      const head = encodeChallenge({ version: VERSION, flags, nonce, proof: Buffer.alloc(32) }).subarray(5, 5 + CHALLENGE_HEAD_BYTES);
      const k = sessionKeys(this.o.token, f.payload, head, h.vmid, flags, h.nonce, nonce);
      c.pending = {
        vmid: h.vmid, proof: k.clientProof,
        ...(this.o.insecurePlaintext ? {} : { rx: new Opener(k.clientToServer), tx: new Sealer(k.serverToClient) }),
      };
      return this.send(c, encodeChallenge({ version: VERSION, flags, nonce, proof: k.serverProof }));
    }
    if (f.type === MsgType.Hello) throw new ProtocolError(ErrorCode.Malformed, 'second HELLO on one connection');
    if (f.type !== MsgType.Proof) throw new ProtocolError(ErrorCode.Malformed, `message type ${f.type} before PROOF`);
    if (!proofsEqual(decodeProof(f.payload), c.pending.proof)) throw new ProtocolError(ErrorCode.BadToken, 'bad token: the PROOF does not match this fork\'s key');
    const { vmid, rx, tx } = c.pending;
    c.pending = undefined;
    c.rx = rx;
    c.tx = tx;
    clearTimeout(c.timer);
    c.stats.vmid = vmid;
    this.authenticated(c);
    this.count(c, 'hellos');
    this.log({ event: 'hello', vmid, remote: c.stats.remote, sealed: !!tx });
    return this.send(c, this.welcome!);
  }

  /** `room`: `b` ends with TAG_BYTES of room for the seal (pagesFrame) */
  private async send(c: Conn, b: Buffer, room = false): Promise<void> {
    if (c.socket.destroyed || c.socket.writableEnded) return;
    if (this.write(c, b, room)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        c.socket.off('drain', done);
        c.socket.off('close', done);
        resolve();
      };
      c.socket.on('drain', done);
      c.socket.on('close', done);
    });
  }

  /** Protocol errors are answered with ERROR; our own failures (e.g. a read error) just drop the connection. */
  private refuse(c: Conn, e: unknown): void {
    if (c.socket.destroyed || c.socket.writableEnded) return;
    if (!(e instanceof ProtocolError)) {
      if (!this.closing) this.log({ event: 'internal-error', remote: c.stats.remote, message: (e as Error).message });
      return void c.socket.destroy();
    }
    const { code, message } = e;
    const frame = encodeError(code, message);
    this.count(c, 'errors');
    this.log({ event: 'protocol-error', code, message, remote: c.stats.remote, vmid: c.stats.vmid });
    this.write(c, frame);
    this.hangUp(c);
  }

  /** Writes a frame, sealed once the connection has keys (in place with `room`); false when the socket wants a drain. */
  private write(c: Conn, frame: Buffer, room = false): boolean {
    const out = !c.tx ? frame : room ? c.tx.sealInPlace(frame) : c.tx.seal(frame);
    this.count(c, 'bytes', out.length);
    return c.socket.write(out);
  }

  /** Half-closes and keeps reading (and ignoring): closing with unread input would send RST and lose our last frame. */
  private hangUp(c: Conn): void {
    c.ended = true;
    c.queue.length = 0;
    c.reader = new FrameReader(); // drops whatever partial frame it held
    clearTimeout(c.timer);
    c.socket.end();
    c.socket.resume();
    c.timer = setTimeout(() => c.socket.destroy(), LINGER_MS);
    c.timer.unref();
  }

  private async finish(): Promise<void> {
    if (this.closing) return;
    this.log({ event: 'finished', vmids: [...this.finishedVmids], stats: { ...this.totals } });
    await this.close();
    this.emit('finished', this.stats());
  }
}

/**
 * Evict = non-zero pages − special pages − eager pages; eager = per-CPU pages that are
 * non-zero and not special (the rest a fresh clone already has right). `maxRanges` only
 * lowers the limit the WELCOME frame sets (tests).
 */
export async function buildPlan(d: Descriptor, index: ImageIndex, eagerPerCpu: number, maxRanges = Infinity): Promise<ServePlan> {
  const { zeroPages, nonzero } = await index.scanZero();
  const special = new Set(d.specialPages.map((p) => p.gfn));
  for (const [param, value] of d.params) {
    if (value === 0n) continue; // unset; gfn 0 is ordinary memory
    if (SPECIAL_PARAMS.has(param)) special.add(Number(value));
    if (param === IDENT_PT) special.add(Number(value >> 12n));
  }
  const eager = eagerGfns(d.hvmContext, (g) => index.readPageSync(g), eagerPerCpu).filter((g) => inRanges(nonzero, g) && !special.has(g));
  const keep = [...new Set([...special, ...eager])].sort((a, b) => a - b);
  let evict = subtract(nonzero, keep);
  // The WELCOME must fit one frame: bridge the smallest all-zero gaps if the map is too fragmented.
  const budget = Math.min(maxRanges, Math.floor((MAX_FRAME - 1 - 32 - eager.length * 8) / 16));
  if (evict.length > budget) evict = bridge(evict, budget, (from, to) => !hasAny(keep, from, to) && allPopulated(index, from, to));
  const evictPages = evict.reduce((n, [, count]) => n + count, 0);
  return { pages: index.pages, zeroPages, evictPages, eagerPages: eager.length, evict, eager };
}

function inRanges(ranges: readonly GfnRange[], gfn: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [start, count] = ranges[mid]!;
    if (gfn < start) hi = mid - 1;
    else if (gfn >= start + count) lo = mid + 1;
    else return true;
  }
  return false;
}

/** first index in sorted `xs` with xs[i] >= v */
function lowerBound(xs: readonly number[], v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const hasAny = (sorted: readonly number[], from: number, to: number) => {
  const i = lowerBound(sorted, from);
  return i < sorted.length && sorted[i]! < to;
};

/** every gfn in [from, to) has a page in the image (indices grow with gfns, so the span tells) */
function allPopulated(index: ImageIndex, from: number, to: number): boolean {
  const a = index.indexOf(from);
  const b = index.indexOf(to - 1);
  return a !== undefined && b !== undefined && b - a === to - 1 - from;
}

/** ranges (ascending, disjoint) minus the gfns in sorted `gfns` */
function subtract(ranges: readonly GfnRange[], gfns: readonly number[]): GfnRange[] {
  const out: GfnRange[] = [];
  for (const [start, count] of ranges) {
    let at = start;
    const end = start + count;
    for (let i = lowerBound(gfns, start); i < gfns.length && gfns[i]! < end; i++) {
      if (gfns[i]! > at) out.push([at, gfns[i]! - at]);
      at = gfns[i]! + 1;
    }
    if (at < end) out.push([at, end - at]);
  }
  return out;
}

/** Joins neighbouring ranges across the smallest gaps `ok` allows, until at most `max` remain. */
function bridge(ranges: GfnRange[], max: number, ok: (from: number, to: number) => boolean): GfnRange[] {
  const gaps: { i: number; size: number }[] = [];
  for (let i = 1; i < ranges.length; i++) {
    const from = ranges[i - 1]![0] + ranges[i - 1]![1];
    if (ok(from, ranges[i]![0])) gaps.push({ i, size: ranges[i]![0] - from });
  }
  const need = ranges.length - max;
  if (gaps.length < need) throw new Error(`memory map too fragmented: ${ranges.length} ranges to page out, at most ${max} fit a WELCOME`);
  const join = new Set(gaps.sort((a, b) => a.size - b.size).slice(0, need).map((g) => g.i));
  const out: GfnRange[] = [];
  ranges.forEach(([start, count], i) => {
    const last = out[out.length - 1];
    if (join.has(i) && last) last[1] = start + count - last[0];
    else out.push([start, count]);
  });
  return out;
}
