/**
 * The in-process cluster manager: hosts are registered with their vCPUs and memory, tickets
 * take slots out of them and give them back. Nothing is persisted; a daemon that owns one of
 * these owns the cluster's state.
 *
 * Placement spreads a ticket's clones across hosts before doubling up on any one of them:
 * clones on different hosts run in parallel and share no host's memory bandwidth. Each round
 * offers one slot to every host that still has room, emptiest (most free vCPUs) first.
 */
import { InvalidRequestError, ManagerClosedError, NoCapacityError, SlotTooLargeError } from './errors.js';
import { TicketBook, newTicketId } from './ticket-book.js';
import { checkFamily, checkTicketRequest } from './validate.js';
import {
  DEFAULT_MAX_CLONES_PER_TICKET, DEFAULT_TICKET_TTL_MS,
  type ClusterDescription, type ClusterManager, type HostSlot, type HostUsage, type ReleaseReason,
  type Ticket, type TicketPolicy, type TicketRequest,
} from './types.js';

export interface HostCapacity {
  name: string;
  vcpus: number;
  memoryMiB: number;
}

export class InternalClusterManager implements ClusterManager {
  private readonly hosts = new Map<string, HostUsage>();
  private readonly book: TicketBook;
  private readonly maxClones: number;
  private closed = false;

  constructor(policy: TicketPolicy = {}) {
    this.maxClones = policy.maxClonesPerTicket ?? DEFAULT_MAX_CLONES_PER_TICKET;
    this.book = new TicketBook(policy.ticketTtlMs ?? DEFAULT_TICKET_TTL_MS, (t) => this.free(t.granted), policy.maxTicketsPerFamily);
  }

  registerHost(host: HostCapacity): void {
    if (typeof host.name !== 'string' || host.name === '') throw new InvalidRequestError('name', 'a host needs a name');
    if (this.hosts.has(host.name)) throw new InvalidRequestError('name', `host ${host.name} is already registered`);
    for (const field of ['vcpus', 'memoryMiB'] as const) {
      if (!Number.isSafeInteger(host[field]) || host[field] <= 0) {
        throw new InvalidRequestError(field, `host ${host.name}: ${field} must be a positive integer, got ${host[field]}`);
      }
    }
    this.hosts.set(host.name, { name: host.name, vcpus: host.vcpus, memoryMiB: host.memoryMiB, usedVcpus: 0, usedMemoryMiB: 0 });
  }

  /** Only an idle host can leave: live tickets still point at the others. */
  removeHost(name: string): void {
    const h = this.hosts.get(name);
    if (!h) throw new InvalidRequestError('name', `no host ${name} is registered`);
    if (h.usedVcpus > 0 || h.usedMemoryMiB > 0) throw new InvalidRequestError('name', `host ${name} still holds granted slots`);
    this.hosts.delete(name);
  }

  async requestTicket(req: TicketRequest): Promise<Ticket> {
    if (this.closed) throw new ManagerClosedError();
    const r = checkTicketRequest(req, this.maxClones);
    this.book.checkRoom(r.family);
    const slot = { vcpus: r.vcpusPerClone, memoryMiB: r.memoryMiBPerClone };
    if (this.hosts.size === 0) throw new NoCapacityError('no hosts are registered with the cluster manager');
    if (![...this.hosts.values()].some((h) => fits(h.vcpus, h.memoryMiB, slot))) {
      throw new SlotTooLargeError(`no registered host can ever hold a clone of ${slot.vcpus} vCPUs and ${slot.memoryMiB} MiB`);
    }
    const granted = this.place(r.n, slot);
    if (granted.length === 0) {
      throw new NoCapacityError(`every host is full: none has ${slot.vcpus} vCPUs and ${slot.memoryMiB} MiB free`);
    }
    for (const s of granted) this.take(s);
    return this.book.issue({ id: newTicketId(), family: r.family, requested: r.n, granted, hierarchical: r.hierarchical });
  }

  async useTicket(ticketId: string, family: string): Promise<Ticket> {
    checkFamily(family);
    return this.book.markInUse(ticketId, family);
  }

  async releaseTicket(ticketId: string, family: string, reason: ReleaseReason = 'release'): Promise<void> {
    checkFamily(family);
    this.book.get(ticketId, family); // throws if it is not this family's live ticket
    this.free(this.book.end(ticketId, reason)!.granted);
  }

  async describe(): Promise<ClusterDescription> {
    const tickets = this.book.list();
    return { manager: 'internal', tickets, hosts: [...this.hosts.values()].map((h) => ({ ...h })) };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.book.endAll()) this.free(t.granted);
  }

  private place(n: number, slot: { vcpus: number; memoryMiB: number }): HostSlot[] {
    const free = [...this.hosts.values()]
      .map((h) => ({ name: h.name, vcpus: h.vcpus - h.usedVcpus, memoryMiB: h.memoryMiB - h.usedMemoryMiB }))
      .sort((a, b) => b.vcpus - a.vcpus || b.memoryMiB - a.memoryMiB || a.name.localeCompare(b.name));
    const granted: HostSlot[] = [];
    for (let placedThisRound = true; granted.length < n && placedThisRound;) {
      placedThisRound = false;
      for (const h of free) {
        if (granted.length === n) break;
        if (!fits(h.vcpus, h.memoryMiB, slot)) continue;
        h.vcpus -= slot.vcpus;
        h.memoryMiB -= slot.memoryMiB;
        granted.push({ host: h.name, ...slot });
        placedThisRound = true;
      }
    }
    return granted;
  }

  private take(s: HostSlot): void {
    const h = this.hosts.get(s.host)!;
    h.usedVcpus += s.vcpus;
    h.usedMemoryMiB += s.memoryMiB;
  }

  private free(slots: readonly HostSlot[]): void {
    for (const s of slots) {
      const h = this.hosts.get(s.host);
      if (!h) continue;
      h.usedVcpus -= s.vcpus;
      h.usedMemoryMiB -= s.memoryMiB;
    }
  }
}

function fits(vcpus: number, memoryMiB: number, slot: { vcpus: number; memoryMiB: number }): boolean {
  return vcpus >= slot.vcpus && memoryMiB >= slot.memoryMiB;
}
