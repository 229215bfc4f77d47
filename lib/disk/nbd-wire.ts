// The NBD protocol's numbers (fixed newstyle handshake, simple replies) and a byte reader for a
// socket, shared by our small read-only NBD server (nbd-server.ts) and client (nbd-client.ts).
// The protocol: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md
import type { Socket } from 'node:net';

export const NBDMAGIC = Buffer.from('NBDMAGIC', 'latin1');
export const IHAVEOPT = 0x49484156454f5054n;
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;

export const OPT = { exportName: 1, abort: 2, list: 3, info: 6, go: 7, structuredReply: 8 } as const;
export const REP = { ack: 1, server: 2, info: 3 } as const;
const ERR = 0x80000000;
export const REP_ERR = { unsup: ERR + 1, policy: ERR + 2, invalid: ERR + 3, unknown: ERR + 6, tooBig: ERR + 9 } as const;
export const INFO = { export: 0, blockSize: 3 } as const;

/** Transmission flags. */
export const TFLAG = { hasFlags: 1, readOnly: 2 } as const;
export const CMD = { read: 0, write: 1, disc: 2, flush: 3, trim: 4, cache: 5, writeZeroes: 6, blockStatus: 7 } as const;
export const ERRNO = { EPERM: 1, EIO: 5, EINVAL: 22, EOVERFLOW: 75 } as const;

export const REQUEST_BYTES = 28;
/** The largest read either side asks or answers (QEMU's own limit, 32 MiB). */
export const MAX_READ = 32 << 20;

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}

/** Bytes of a socket taken `n` at a time: `take` resolves once they are there, rejects once the socket ends first. */
export class ByteReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;

  constructor(socket: Socket) {
    socket.on('data', (b: Buffer) => {
      this.chunks.push(b);
      this.have += b.length;
      this.serve();
    });
    socket.on('close', () => this.end(new Error('connection closed')));
    socket.on('error', (e) => this.end(e));
  }

  take(n: number): Promise<Buffer> {
    if (this.want) return Promise.reject(new Error('ByteReader: one take at a time'));
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const w = this.want;
    if (!w) return;
    if (this.have >= w.n) {
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      const out = all.subarray(0, w.n);
      const rest = all.subarray(w.n);
      this.chunks = rest.length ? [rest] : [];
      this.have = rest.length;
      this.want = undefined;
      w.resolve(out);
    } else if (this.ended) {
      this.want = undefined;
      w.reject(this.ended);
    }
  }

  private end(e: Error): void {
    this.ended ??= e;
    this.serve();
  }
}
