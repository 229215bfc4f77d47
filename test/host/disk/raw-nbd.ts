// A bare NBD client on a raw socket, for sending a server what no real client sends: garbage
// instead of the handshake, requests with a bad magic, absurd lengths or offsets past the end.
// Fixed-newstyle handshake, NBD_OPT_STRUCTURED_REPLY (so QEMU says why it refuses a request),
// NBD_OPT_GO; replies read as simple or structured, errors with QEMU's message.
import { connect, type Socket } from 'node:net';

const IHAVEOPT = 0x49484156454f5054n;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const REPLY_FLAG_DONE = 1;
export const CMD = { read: 0, write: 1, disc: 2, flush: 3 } as const;
export const OPT = { go: OPT_GO, structuredReply: OPT_STRUCTURED_REPLY } as const;

export interface Reply {
  handle: bigint;
  /** 0, or the NBD error number (22 EINVAL, 28 ENOSPC, 75 EOVERFLOW, ...) */
  error: number;
  /** the server's words, in a structured error reply */
  message?: string;
  data: Buffer;
}

export class RawNbd {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private ended = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (b) => {
      this.buf = Buffer.concat([this.buf, b]);
      this.waiter?.();
    });
    const end = () => {
      this.ended = true;
      this.waiter?.();
    };
    socket.on('close', end).on('error', end);
  }

  static connect(to: { path: string } | { host: string; port: number }): Promise<RawNbd> {
    return new Promise((resolve, reject) => {
      const s = 'path' in to ? connect(to.path) : connect(to.port, to.host);
      s.once('connect', () => resolve(new RawNbd(s)));
      s.once('error', reject);
    });
  }

  /** true once the server has closed the connection */
  get closed(): boolean {
    return this.ended;
  }

  send(b: Buffer): void {
    this.socket.write(b);
  }

  /** `n` bytes, or undefined when the server closes first (or `ms` pass). */
  async read(n: number, ms = 5000): Promise<Buffer | undefined> {
    const deadline = Date.now() + ms;
    while (this.buf.length < n) {
      if (this.ended || Date.now() > deadline) return undefined;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
      this.waiter = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves true when the server closes the connection within `ms`. */
  async closesWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.ended && Date.now() < deadline) await this.read(Number.MAX_SAFE_INTEGER, deadline - Date.now());
    return this.ended;
  }

  /** The server's greeting: NBDMAGIC, IHAVEOPT, its handshake flags. */
  async greeting(): Promise<number> {
    const g = await this.read(18);
    if (!g || g.toString('latin1', 0, 8) !== 'NBDMAGIC' || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('no fixed-newstyle greeting');
    return g.readUInt16BE(16);
  }

  /** The whole handshake to the transmission phase on `name`; resolves with the export's size. */
  async handshake(name: string): Promise<bigint> {
    await this.greeting();
    this.send(u32(3)); // FIXED_NEWSTYLE | NO_ZEROES
    await this.option(OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    const n = Buffer.from(name);
    const infos = await this.option(OPT_GO, Buffer.concat([u32(n.length), n, u16(0)]));
    const exp = infos.find((i) => i.readUInt16BE(0) === 0);
    if (!exp) throw new Error(`NBD_OPT_GO ${name}: no export info`);
    return exp.readBigUInt64BE(2);
  }

  /** An option header claiming `declared` bytes of data, followed by `data` (which may be fewer). */
  rawOption(opt: number, declared: number, data: Buffer = Buffer.alloc(0)): void {
    const head = Buffer.alloc(16);
    head.writeBigUInt64BE(IHAVEOPT, 0);
    head.writeUInt32BE(opt, 8);
    head.writeUInt32BE(declared >>> 0, 12);
    this.send(Buffer.concat([head, data]));
  }

  /** A request as the client writes it; `magic` and the fields may be anything. */
  request(o: { type: number; offset: bigint; length: number; handle?: bigint; magic?: number; flags?: number; payload?: Buffer }): void {
    const r = Buffer.alloc(28);
    r.writeUInt32BE(o.magic ?? REQUEST_MAGIC, 0);
    r.writeUInt16BE(o.flags ?? 0, 4);
    r.writeUInt16BE(o.type, 6);
    r.writeBigUInt64BE(o.handle ?? 1n, 8);
    r.writeBigUInt64BE(o.offset, 16);
    r.writeUInt32BE(o.length >>> 0, 24);
    this.send(o.payload ? Buffer.concat([r, o.payload]) : r);
  }

  /** The next reply (all chunks of a structured one), or undefined when the server closes instead. */
  async reply(ms = 5000): Promise<Reply | undefined> {
    const out: Reply = { handle: 0n, error: 0, data: Buffer.alloc(0) };
    for (;;) {
      const magic = await this.read(4, ms);
      if (!magic) return undefined;
      if (magic.readUInt32BE(0) === SIMPLE_REPLY_MAGIC) {
        const h = await this.read(12, ms);
        if (!h) return undefined;
        return { handle: h.readBigUInt64BE(4), error: h.readUInt32BE(0), data: Buffer.alloc(0) };
      }
      if (magic.readUInt32BE(0) !== STRUCTURED_REPLY_MAGIC) throw new Error(`reply magic ${magic.toString('hex')}`);
      const h = await this.read(16, ms);
      if (!h) return undefined;
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      out.handle = h.readBigUInt64BE(4);
      const payload = await this.read(h.readUInt32BE(12), ms);
      if (!payload) return undefined;
      if (type & 0x8000) {
        out.error = payload.readUInt32BE(0);
        out.message = payload.toString('utf8', 6, 6 + payload.readUInt16BE(4));
      } else if (type === 1) {
        out.data = Buffer.concat([out.data, payload.subarray(8)]); // NBD_REPLY_TYPE_OFFSET_DATA
      }
      if (flags & REPLY_FLAG_DONE) return out;
    }
  }

  close(): void {
    this.socket.destroy();
  }

  /** Sends an option; returns the info payloads up to its ACK, or throws the server's refusal. */
  private async option(opt: number, data: Buffer): Promise<Buffer[]> {
    this.rawOption(opt, data.length, data);
    const infos: Buffer[] = [];
    for (;;) {
      const r = await this.read(20);
      if (!r || r.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new Error(`option ${opt}: no reply`);
      const type = r.readUInt32BE(12);
      const body = (await this.read(r.readUInt32BE(16))) ?? Buffer.alloc(0);
      if (type === 1) return infos; // NBD_REP_ACK
      if (type & 0x80000000) throw new Error(`option ${opt} refused (${type - 0x80000000}): ${body.toString('utf8')}`);
      infos.push(body);
    }
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
