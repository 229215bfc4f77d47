// A small read-only NBD server on a unix socket, for one export whose bytes come from a callback
// (a clone host's mcdist block cache: mcdist-backing.ts). It speaks what QEMU's NBD client needs
// and no more: the fixed newstyle handshake (NBD_OPT_GO and NBD_OPT_INFO with the export's size
// and preferred block size, NBD_OPT_EXPORT_NAME, NBD_OPT_LIST, NBD_OPT_ABORT), simple replies
// only (NBD_OPT_STRUCTURED_REPLY and every other option is answered NBD_REP_ERR_UNSUP, on which
// QEMU carries on with simple replies), and in transmission NBD_CMD_READ and NBD_CMD_DISC.
//
// A peer that sends what the protocol does not allow (a bad magic, a client without fixed
// newstyle, an oversized option, a read past the end or above 32 MiB, a write, an unknown
// command) is refused by name: the refusal is logged and kept in `refusals`, the request gets an
// error reply when it has a handle, and that connection alone is dropped.
import { createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import {
  ByteReader, CMD, ERRNO, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO, MAX_READ, NBDMAGIC, OPT, OPT_REPLY_MAGIC,
  REP, REP_ERR, REQUEST_BYTES, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, TFLAG, u16, u32, u64,
} from './nbd-wire.js';

export interface NbdExport {
  name: string;
  size: number;
  /** Exactly `length` bytes at `offset` (inside the export); a rejection is answered EIO. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Advertised in NBD_INFO_BLOCK_SIZE (default 4096). */
  preferredBlockSize?: number;
}

export interface NbdServerStats {
  connections: number;
  open: number;
  reads: number;
  bytesRead: number;
  /** reads whose bytes could not be had (answered EIO) */
  readErrors: number;
  refused: number;
}

/** Longest option a peer may send (an export name is at most 4 KiB in the protocol). */
const MAX_OPTION_BYTES = 4096 + 64;
/** Reads a connection may have outstanding before we stop reading its requests. */
const MAX_IN_FLIGHT = 64;
const TRANSMISSION_FLAGS = TFLAG.hasFlags | TFLAG.readOnly;
const COMMAND_NAMES: Record<number, string> = { [CMD.write]: 'write', [CMD.flush]: 'flush', [CMD.trim]: 'trim', [CMD.cache]: 'cache', [CMD.writeZeroes]: 'write-zeroes', [CMD.blockStatus]: 'block-status' };

/** What a peer did wrong; its connection is dropped after `reply` (an error reply, when there is a handle to answer). */
class Refusal extends Error {
  constructor(message: string, readonly reply?: Buffer) {
    super(message);
  }
}

export class NbdReadOnlyServer {
  readonly refusals: string[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly counters = { connections: 0, reads: 0, bytesRead: 0, readErrors: 0, refused: 0 };

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly exp: NbdExport,
    private readonly log: (m: string) => void,
  ) {
    server.on('connection', (s) => void this.serve(s));
  }

  /** Listens on the unix socket `path` (a stale socket file there is replaced). */
  static async listen(path: string, exp: NbdExport, o: { log?: (m: string) => void } = {}): Promise<NbdReadOnlyServer> {
    rmSync(path, { force: true });
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new NbdReadOnlyServer(path, server, exp, o.log ?? (() => {}));
  }

  stats(): NbdServerStats {
    return { ...this.counters, open: this.sockets.size };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
    rmSync(this.path, { force: true });
  }

  private async serve(socket: Socket): Promise<void> {
    const id = ++this.counters.connections;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined); // a peer that goes away mid-reply; 'close' follows
    const reader = new ByteReader(socket);
    try {
      if (await this.handshake(socket, reader)) await this.transmission(socket, reader);
    } catch (e) {
      if (e instanceof Refusal) {
        this.counters.refused++;
        const m = `NBD server ${this.path}: connection ${id} refused: ${e.message}`;
        this.refusals.push(e.message);
        if (this.refusals.length > 100) this.refusals.shift();
        this.log(m);
        if (!socket.destroyed) socket.end(e.reply ?? Buffer.alloc(0));
        setTimeout(() => socket.destroy(), 1000).unref();
        return;
      }
      // the peer went away: nothing to answer
    }
    socket.destroy();
  }

  /** The handshake; true when the peer entered transmission, false when it ended the session. */
  private async handshake(socket: Socket, reader: ByteReader): Promise<boolean> {
    socket.write(Buffer.concat([NBDMAGIC, u64(IHAVEOPT), u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)]));
    const flags = (await reader.take(4)).readUInt32BE(0);
    if (!(flags & FLAG_FIXED_NEWSTYLE)) throw new Refusal(`client flags 0x${flags.toString(16)}: not fixed newstyle`);
    if (flags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) throw new Refusal(`unknown client flags 0x${flags.toString(16)}`);
    const zeroes = !(flags & FLAG_NO_ZEROES);
    const exp = this.exp;
    for (;;) {
      const h = await reader.take(16);
      if (h.readBigUInt64BE(0) !== IHAVEOPT) throw new Refusal(`bad option magic 0x${h.readBigUInt64BE(0).toString(16)}`);
      const opt = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (len > MAX_OPTION_BYTES) throw new Refusal(`option ${opt} claims ${len} bytes (at most ${MAX_OPTION_BYTES})`);
      const data = await reader.take(len);
      const reply = (type: number, body: Buffer = Buffer.alloc(0)) =>
        socket.write(Buffer.concat([u64(OPT_REPLY_MAGIC), u32(opt), u32(type), u32(body.length), body]));
      switch (opt) {
        case OPT.exportName: {
          const name = data.toString('utf8');
          if (name !== exp.name) throw new Refusal(`unknown export "${name}" (NBD_OPT_EXPORT_NAME)`);
          socket.write(Buffer.concat([u64(BigInt(exp.size)), u16(TRANSMISSION_FLAGS), Buffer.alloc(zeroes ? 124 : 0)]));
          return true;
        }
        case OPT.abort:
          reply(REP.ack);
          return false;
        case OPT.list: {
          const name = Buffer.from(exp.name);
          reply(REP.server, Buffer.concat([u32(name.length), name]));
          reply(REP.ack);
          break;
        }
        case OPT.info:
        case OPT.go: {
          const nameLen = len >= 4 ? data.readUInt32BE(0) : -1;
          const infos = nameLen >= 0 && 4 + nameLen + 2 <= len ? data.readUInt16BE(4 + nameLen) : -1;
          if (infos < 0 || len !== 4 + nameLen + 2 + 2 * infos) {
            reply(REP_ERR.invalid, Buffer.from(`malformed ${opt === OPT.go ? 'NBD_OPT_GO' : 'NBD_OPT_INFO'} (${len} bytes)`));
            break;
          }
          const name = data.toString('utf8', 4, 4 + nameLen);
          if (name !== exp.name) {
            reply(REP_ERR.unknown, Buffer.from(`export "${name}" not available`));
            break;
          }
          reply(REP.info, Buffer.concat([u16(INFO.export), u64(BigInt(exp.size)), u16(TRANSMISSION_FLAGS)]));
          reply(REP.info, Buffer.concat([u16(INFO.blockSize), u32(1), u32(exp.preferredBlockSize ?? 4096), u32(MAX_READ)]));
          reply(REP.ack);
          if (opt === OPT.go) return true;
          break;
        }
        default:
          // NBD_OPT_STRUCTURED_REPLY, NBD_OPT_STARTTLS, meta contexts...: QEMU goes on without them
          reply(REP_ERR.unsup, Buffer.from(`option ${opt} not supported`));
      }
    }
  }

  private async transmission(socket: Socket, reader: ByteReader): Promise<void> {
    let inFlight = 0;
    let wake: (() => void) | undefined;
    const settled = () => {
      inFlight--;
      wake?.();
    };
    const until = async (ok: () => boolean) => {
      while (!ok()) await new Promise<void>((r) => (wake = r));
      wake = undefined;
    };
    for (;;) {
      await until(() => inFlight < MAX_IN_FLIGHT);
      const r = await reader.take(REQUEST_BYTES);
      const magic = r.readUInt32BE(0);
      if (magic !== REQUEST_MAGIC) throw new Refusal(`bad request magic 0x${magic.toString(16)}`);
      const type = r.readUInt16BE(6);
      const handle = r.subarray(8, 16);
      const offset = Number(r.readBigUInt64BE(16));
      const length = r.readUInt32BE(24);
      const refuse = (errno: number, why: string) => new Refusal(why, simpleReply(errno, handle));
      if (type === CMD.disc) {
        await until(() => inFlight === 0);
        socket.end();
        return;
      }
      if (type !== CMD.read) {
        const name = COMMAND_NAMES[type];
        throw name === undefined
          ? refuse(ERRNO.EINVAL, `unknown command ${type}`)
          : refuse(type === CMD.write || type === CMD.trim || type === CMD.writeZeroes ? ERRNO.EPERM : ERRNO.EINVAL, `${name} on a read-only export`);
      }
      if (length === 0 || length > MAX_READ) throw refuse(ERRNO.EINVAL, `read of ${length} bytes (1..${MAX_READ})`);
      if (offset + length > this.exp.size) throw refuse(ERRNO.EINVAL, `read of ${length} bytes at ${offset} is past the end of export ${this.exp.name} (${this.exp.size} bytes)`);
      inFlight++;
      this.counters.reads++;
      this.exp.read(offset, length).then((data) => {
        if (data.length !== length) throw new Error(`got ${data.length} bytes for a read of ${length}`);
        this.counters.bytesRead += length;
        if (!socket.writableEnded) socket.write(Buffer.concat([simpleReply(0, handle), data]));
      }).catch((e: Error) => {
        this.counters.readErrors++;
        this.log(`NBD server ${this.path}: read of ${length} bytes at ${offset} failed: ${e.message}`);
        if (!socket.writableEnded) socket.write(simpleReply(ERRNO.EIO, handle));
      }).finally(settled);
    }
  }
}

function simpleReply(error: number, handle: Buffer): Buffer {
  return Buffer.concat([u32(SIMPLE_REPLY_MAGIC), u32(error), handle]);
}
