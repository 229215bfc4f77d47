/**
 * The cluster-manager side of sf_request_ticket / sf_join / sf_kill: a VM family asks for n
 * clone slots and is granted a ticket for m <= n of them, placed on hosts; the ticket ends
 * when the family joins or is killed, or expires if nobody clones with it.
 */

/** What sf_request_ticket(n, { hierarchical }) asks for, with the size of one clone. */
export interface TicketRequest {
  /** The VM family asking: the parent VM's id, shared by all of its clones. */
  family: string;
  /** Clones wanted. The grant may be smaller; the caller rebalances its work. */
  n: number;
  vcpusPerClone: number;
  memoryMiBPerClone: number;
  /** Whether clones may fork in turn. Recorded on the ticket; placement does not use it yet. */
  hierarchical?: boolean;
}

/** Room for one clone on one host. Two slots on the same host are two clones there. */
export interface HostSlot {
  /** The snowflock host (dom0) that will build this clone. */
  host: string;
  vcpus: number;
  memoryMiB: number;
}

/** granted: nobody has cloned with it yet, it expires at expiresAt. in-use: clones exist, it lives until released. */
export type TicketState = 'granted' | 'in-use';

export interface Ticket {
  readonly id: string;
  readonly family: string;
  /** n as asked; granted.length is m. */
  readonly requested: number;
  readonly granted: readonly HostSlot[];
  readonly hierarchical: boolean;
  readonly state: TicketState;
  /** Milliseconds since the epoch. */
  readonly issuedAt: number;
  /** When an unused ticket is taken back; null once it is in use. */
  readonly expiresAt: number | null;
  /** The backing manager's own handle for the grant (Slurm: the job id), if it has one. */
  readonly allocation?: string;
}

/** Why a ticket ended: the family let it go, sf_join, sf_kill, or nobody used it in time. */
export type ReleaseReason = 'release' | 'join' | 'kill';
export type EndReason = ReleaseReason | 'expired';

/** A host's capacity and what live tickets hold of it (managers that track hosts themselves). */
export interface HostUsage {
  name: string;
  vcpus: number;
  memoryMiB: number;
  usedVcpus: number;
  usedMemoryMiB: number;
}

export interface ClusterDescription {
  manager: string;
  /** Live tickets, oldest first. */
  tickets: Ticket[];
  /** Present when the manager tracks hosts itself (the internal one). */
  hosts?: HostUsage[];
}

/**
 * Every cluster manager, in-process or backed by a batch system. Calls that name a ticket
 * also name the family making them: a ticket is usable only by the family it was granted to.
 * Errors are the ClusterError subclasses in errors.ts.
 */
export interface ClusterManager {
  /** Grants up to req.n slots; rejects only when it can grant none at all. */
  requestTicket(req: TicketRequest): Promise<Ticket>;
  /** sf_clone took the ticket: it stops expiring and lives until released. */
  useTicket(ticketId: string, family: string): Promise<Ticket>;
  /** Gives the slots back (sf_join, sf_kill, or a family that changed its mind). */
  releaseTicket(ticketId: string, family: string, reason?: ReleaseReason): Promise<void>;
  describe(): Promise<ClusterDescription>;
  /** Releases every live ticket and stops the expiry timers. */
  close(): Promise<void>;
}

/** Settings every manager shares. */
export interface TicketPolicy {
  /** How long a granted ticket waits for useTicket before it is taken back. Default 10 minutes. */
  ticketTtlMs?: number;
  /** Largest n accepted in one request. Default 1024. */
  maxClonesPerTicket?: number;
  /** Unused (granted, not yet cloned with) tickets one family may hold at once. Default 16. */
  maxTicketsPerFamily?: number;
}

export const DEFAULT_TICKET_TTL_MS = 10 * 60_000;
export const DEFAULT_MAX_CLONES_PER_TICKET = 1024;
export const DEFAULT_MAX_TICKETS_PER_FAMILY = 16;
