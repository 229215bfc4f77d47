/** What both transports (multicast and the TCP fallback) offer their users. */
import type { Transport } from './session.js';
import type { DropCounters } from './wire.js';

export interface Block {
  index: number;
  data: Buffer;
}

/**
 * Receives verified blocks in batches. Called before the fetch() promises of
 * the batch's blocks resolve, so a consumer that installs blocks (e.g. writes
 * pages into a clone's memory) has done so before any waiter resumes.
 */
export type BatchHandler = (blocks: readonly Block[]) => void;

export type Log = (message: string) => void;

export interface ClientStats {
  transport: Transport;
  /** Requests sent, first attempts and retransmissions. */
  requestsSent: number;
  retransmits: number;
  /** Distinct blocks received and verified. */
  blocksReceived: number;
  /** Of those, blocks this client never asked for (another clone's request). */
  prefetched: number;
  /** Blocks received again after we already had them. */
  duplicates: number;
  batches: number;
  bytesReceived: number;
  /** Current receive rate estimate, bytes/s. */
  rxRate: number;
  /** Current retransmit timeout (0 on TCP). */
  retransmitMs: number;
  drops: DropCounters;
}

export interface BlockClient {
  readonly transport: Transport;
  /** The block's bytes, verified. Rejects on close or when the server stops answering. */
  fetch(index: number): Promise<Buffer>;
  /** Whether the block has been delivered (through onBatch) already. */
  has(index: number): boolean;
  stats(): ClientStats;
  close(): Promise<void>;
}

export interface ServerStats {
  transport: Transport;
  /** Authenticated requests received. */
  requestsReceived: number;
  /** Blocks sent: first sends plus resends. */
  blocksSent: number;
  /** Of those, sends of a block that had been sent before (a client missed it, or joined late). */
  resends: number;
  /** Resends where the requester had received later sends: real losses, fed to flow control. */
  losses: number;
  /** Resends to clients that joined late or lost a reply and everything after it. */
  stale: number;
  /** Requests answered by a send already queued, or one sent within the lockstep window. */
  merged: number;
  suppressed: number;
  /** Bytes put on the wire, headers and MACs included. */
  bytesSent: number;
  rateCuts: number;
  /** Current limit and measured send rate, bytes/s. */
  rateLimit: number;
  txRate: number;
  drops: DropCounters;
}
