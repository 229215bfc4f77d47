// mcdist in a fork's disk block path (docs/disks.md, "mcdist for blocks"). On the parent's host an
// mcdist server per slice reads the frozen slice from the family daemon's unix socket (NBD) in
// blocks of DISK_BLOCK_SIZE. On each clone's host an mcdist client of that session fills a block
// cache, and a read-only NBD server on a local unix socket answers from it: the clone's overlay
// (qcow2, in the clone host's family daemon) has that socket as its backing instead of the
// fork's front. Copy-on-write stays QEMU's: the overlay asks its backing only for what the clone
// reads and has not written, and when several clones read the same block, one multicast send
// reaches them all.
import { type ClientOptions, type DistributionServer, type ServerOptions, openClient, startServer } from '../mcdist/transport.js';
import { createSession, decodeSession, encodeSession } from '../mcdist/session.js';
import type { BlockSource } from '../mcdist/source.js';
import type { BlockClient, ClientStats } from '../mcdist/types.js';
import { NbdClient, type NbdAddress } from './nbd-client.js';
import { NbdReadOnlyServer, type NbdServerStats } from './nbd-server.js';

/**
 * Half a qcow2 cluster of the slices (64 KiB): a whole cluster does not fit a UDP datagram with
 * mcdist's framing (at most 65467 bytes of block), and a block this size is still one
 * datagram (fragmented on the wire).
 */
export const DISK_BLOCK_SIZE = 32 * 1024;

/**
 * A clone host's receive buffer: mcdist's default (1 MiB, sized for 4 KiB pages) holds only
 * about 30 disk blocks, fewer with the fragments' overhead, and 4 clones reading together lost
 * a fifth of the sends to it. 4 MiB keeps about the depth pages get (the kernel caps it at
 * net.core.rmem_max).
 */
export const DISK_RECV_BUFFER = 4 * 1024 * 1024;

/** What a clone's host needs to read a slice over mcdist: hand it over the authenticated control channel (it holds the session key). */
export interface SliceSession {
  /** the mcdist session (encodeSession: key included) */
  session: string;
  /** the slice's size in bytes (the session counts whole blocks) */
  sizeBytes: number;
  /** the export name the clone's NBD node asks for */
  name: string;
}

/** A slice read over NBD, cut into blocks for an mcdist server; the last block may be short. */
export function nbdBlockSource(nbd: NbdClient, blockSize: number): BlockSource {
  return {
    count: Math.ceil(nbd.size / blockSize),
    read: (index) => {
      const offset = index * blockSize;
      return nbd.read(offset, Math.min(blockSize, nbd.size - offset));
    },
  };
}

export interface SliceServer {
  readonly descriptor: SliceSession;
  readonly mcdist: DistributionServer;
  close(): Promise<void>;
}

/**
 * An mcdist server for one slice: reads it through `nbd` (the family daemon's unix socket and
 * the slice's export there) and serves it from `serverAddress` (the parent's host address on
 * the clones' network).
 */
export async function serveSlice(o: {
  nbd: NbdAddress;
  export: string;
  serverAddress: string;
  name?: string;
  blockSize?: number;
  server?: ServerOptions;
}): Promise<SliceServer> {
  const blockSize = o.blockSize ?? DISK_BLOCK_SIZE;
  const nbd = await NbdClient.connect(o.nbd, o.export);
  try {
    const source = nbdBlockSource(nbd, blockSize);
    const mcdist = await startServer(createSession({ blockSize, blockCount: source.count, serverAddress: o.serverAddress }), source, o.server);
    return {
      descriptor: { session: encodeSession(mcdist.session), sizeBytes: nbd.size, name: o.name ?? o.export.split('/').at(-1)! },
      mcdist,
      close: async () => {
        await mcdist.close();
        nbd.close();
      },
    };
  } catch (e) {
    nbd.close();
    throw e;
  }
}

export interface BackingStats {
  nbd: NbdServerStats;
  mcdist: ClientStats;
  /** distinct blocks the clone's reads needed */
  blocksWanted: number;
}

/** A clone host's side of one slice: an mcdist client and the NBD server the clone's overlay reads. */
export class McdistBacking {
  private readonly wanted = new Set<number>();

  private constructor(
    readonly descriptor: SliceSession,
    readonly client: BlockClient,
    private readonly blockSize: number,
    private server: NbdReadOnlyServer | undefined,
  ) {}

  /** Joins the slice's session and serves it read-only on the unix socket `socket`. */
  static async open(o: { descriptor: SliceSession; socket: string; client?: ClientOptions; log?: (m: string) => void }): Promise<McdistBacking> {
    const session = decodeSession(o.descriptor.session);
    const size = o.descriptor.sizeBytes;
    if (!Number.isSafeInteger(size) || size < 0 || Math.ceil(size / session.blockSize) !== session.blockCount) {
      throw new RangeError(`slice ${o.descriptor.name}: ${size} bytes is not ${session.blockCount} blocks of ${session.blockSize}`);
    }
    const client = await openClient(session, { log: o.log, recvBufferSize: DISK_RECV_BUFFER, ...o.client });
    const b = new McdistBacking(o.descriptor, client, session.blockSize, undefined);
    try {
      b.server = await NbdReadOnlyServer.listen(o.socket, {
        name: o.descriptor.name, size, preferredBlockSize: session.blockSize, read: (offset, length) => b.read(offset, length),
      }, { log: o.log });
    } catch (e) {
      await client.close();
      throw e;
    }
    return b;
  }

  get nbd(): NbdReadOnlyServer {
    return this.server!;
  }

  /** The blocks under [offset, offset + length), fetched together, cut to the range. */
  async read(offset: number, length: number): Promise<Buffer> {
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const indices = Array.from({ length: last - first + 1 }, (_, i) => first + i);
    for (const i of indices) this.wanted.add(i);
    const blocks = await Promise.all(indices.map((i) => this.client.fetch(i)));
    const all = blocks.length === 1 ? blocks[0]! : Buffer.concat(blocks);
    return all.subarray(offset - first * bs, offset - first * bs + length);
  }

  stats(): BackingStats {
    return { nbd: this.nbd.stats(), mcdist: this.client.stats(), blocksWanted: this.wanted.size };
  }

  async close(): Promise<void> {
    await this.server?.close();
    await this.client.close();
  }
}
