// A small NBD client: fixed newstyle handshake, NBD_OPT_GO on one export, simple replies (it
// never asks for structured ones), reads pipelined and matched by handle. What an mcdist server
// on a parent's host reads a fork's slice with (from the family daemon's unix socket), and what
// the host tests read exports with. Nothing else: no writes, no TLS.
import { connect, type Socket } from 'node:net';
import {
  ByteReader, CMD, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO, MAX_READ, NBDMAGIC, OPT, OPT_REPLY_MAGIC, REP,
  REQUEST_BYTES, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, u16, u32, u64,
} from './nbd-wire.js';

export type NbdAddress = { path: string } | { host: string; port: number };

interface Pending {
  length: number;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

export class NbdClient {
  private readonly pending = new Map<bigint, Pending>();
  private nextHandle = 1n;
  private failed: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    readonly exportName: string,
    /** the export's size in bytes */
    readonly size: number,
    /** its transmission flags */
    readonly flags: number,
  ) {
    void this.receive();
  }

  /** Connects and negotiates `exportName`; rejects with the server's refusal in its words. */
  static async connect(to: NbdAddress, exportName: string): Promise<NbdClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = 'path' in to ? connect(to.path) : connect(to.port, to.host);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    const reader = new ByteReader(socket);
    const where = 'path' in to ? to.path : `${to.host}:${to.port}`;
    try {
      const g = await reader.take(18);
      if (!g.subarray(0, 8).equals(NBDMAGIC) || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('not a fixed-newstyle NBD server');
      if (!(g.readUInt16BE(16) & FLAG_FIXED_NEWSTYLE)) throw new Error('the server does not speak fixed newstyle');
      socket.write(u32(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
      const name = Buffer.from(exportName);
      const data = Buffer.concat([u32(name.length), name, u16(0)]);
      socket.write(Buffer.concat([u64(IHAVEOPT), u32(OPT.go), u32(data.length), data]));
      let size: number | undefined;
      let flags = 0;
      for (;;) {
        const h = await reader.take(20);
        if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new Error('bad option reply magic');
        const type = h.readUInt32BE(12);
        const body = await reader.take(h.readUInt32BE(16));
        if (type === REP.ack) break;
        if (type & 0x80000000) throw new Error(`export ${exportName} refused (NBD_REP error ${type - 0x80000000}): ${body.toString('utf8') || 'no message'}`);
        if (type === REP.info && body.length >= 12 && body.readUInt16BE(0) === INFO.export) {
          size = Number(body.readBigUInt64BE(2));
          flags = body.readUInt16BE(10);
        }
      }
      if (size === undefined) throw new Error(`export ${exportName}: the server gave no size`);
      return new NbdClient(socket, reader, exportName, size, flags);
    } catch (e) {
      socket.destroy();
      throw new Error(`NBD ${where}: ${(e as Error).message}`);
    }
  }

  /** `length` bytes at `offset`; rejects with the server's error number, or when the connection is lost. */
  read(offset: number, length: number): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 1 || length > MAX_READ || offset + length > this.size) {
      return Promise.reject(new RangeError(`NBD read of ${length} bytes at ${offset} is outside export ${this.exportName} (${this.size} bytes)`));
    }
    const handle = this.nextHandle++;
    return new Promise((resolve, reject) => {
      this.pending.set(handle, { length, resolve, reject });
      this.socket.write(request(CMD.read, handle, offset, length));
    });
  }

  /** Sends NBD_CMD_DISC and closes. */
  close(): void {
    if (!this.socket.destroyed) this.socket.end(request(CMD.disc, 0n, 0, 0));
    this.fail(new Error(`NBD export ${this.exportName}: closed`));
  }

  private async receive(): Promise<void> {
    try {
      for (;;) {
        const h = await this.reader.take(16);
        if (h.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error(`unexpected reply magic 0x${h.readUInt32BE(0).toString(16)}`);
        const error = h.readUInt32BE(4);
        const handle = h.readBigUInt64BE(8);
        const p = this.pending.get(handle);
        if (!p) throw new Error(`a reply to handle ${handle}, which was not asked`);
        this.pending.delete(handle);
        if (error) p.reject(new Error(`NBD read of export ${this.exportName} failed: error ${error}`));
        else p.resolve(await this.reader.take(p.length));
      }
    } catch (e) {
      this.fail(new Error(`NBD export ${this.exportName}: ${(e as Error).message}`));
      this.socket.destroy();
    }
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const p of this.pending.values()) p.reject(this.failed);
    this.pending.clear();
  }
}

function request(type: number, handle: bigint, offset: number, length: number): Buffer {
  const r = Buffer.alloc(REQUEST_BYTES);
  r.writeUInt32BE(REQUEST_MAGIC, 0);
  r.writeUInt16BE(type, 6);
  r.writeBigUInt64BE(handle, 8);
  r.writeBigUInt64BE(BigInt(offset), 16);
  r.writeUInt32BE(length, 24);
  return r;
}
