/**
 * The ledger every manager keeps: live tickets, their expiry timers, and a bounded memory of
 * ended ones so a late call gets "expired" or "released" instead of "no such ticket".
 * It decides nothing about capacity; the manager frees resources when told a ticket ended.
 */
import { randomBytes } from 'node:crypto';
import {
  TicketExpiredError, TicketInUseError, TicketReleasedError, TooManyTicketsError, UnknownTicketError, WrongFamilyError,
} from './errors.js';
import { DEFAULT_MAX_TICKETS_PER_FAMILY, type EndReason, type HostSlot, type Ticket, type TicketState } from './types.js';

/** How many ended tickets are remembered for error messages. */
const ENDED_MEMORY = 4096;

export interface NewTicket {
  id: string;
  family: string;
  requested: number;
  granted: readonly HostSlot[];
  hierarchical: boolean;
  allocation?: string;
}

interface Entry {
  ticket: NewTicket;
  state: TicketState;
  issuedAt: number;
  expiresAt: number | null;
  timer: NodeJS.Timeout | null;
}

/** Unguessable, so a family cannot stumble on another family's ticket by counting. */
export function newTicketId(): string {
  return `t-${randomBytes(8).toString('hex')}`;
}

export class TicketBook {
  private readonly live = new Map<string, Entry>();
  private readonly ended = new Map<string, EndReason>();

  /** onExpire runs once per ticket that timed out unused, after it left the book. */
  constructor(
    private readonly ttlMs: number,
    private readonly onExpire: (ticket: Ticket) => void,
    private readonly maxPerFamily = DEFAULT_MAX_TICKETS_PER_FAMILY,
  ) {}

  /** Before a manager allocates anything: the family may hold another unused ticket. */
  checkRoom(family: string): void {
    this.expireOverdue();
    let unused = 0;
    for (const e of this.live.values()) if (e.ticket.family === family && e.state === 'granted') unused++;
    if (unused >= this.maxPerFamily) throw new TooManyTicketsError(family, this.maxPerFamily);
  }

  issue(t: NewTicket): Ticket {
    const issuedAt = Date.now();
    const entry: Entry = { ticket: { ...t, granted: t.granted.map((s) => ({ ...s })) }, state: 'granted', issuedAt, expiresAt: issuedAt + this.ttlMs, timer: null };
    entry.timer = setTimeout(() => this.expire(t.id), this.ttlMs);
    entry.timer.unref();
    this.live.set(t.id, entry);
    return snapshot(entry);
  }

  /** The live ticket if `family` owns it; otherwise the error that says why not. */
  get(id: string, family: string): Ticket {
    return snapshot(this.entry(id, family));
  }

  markInUse(id: string, family: string): Ticket {
    const entry = this.entry(id, family);
    if (entry.state === 'in-use') throw new TicketInUseError(id);
    entry.state = 'in-use';
    entry.expiresAt = null;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    return snapshot(entry);
  }

  /** Takes the ticket out of the book; the caller frees what it held. */
  end(id: string, reason: EndReason): Ticket | undefined {
    const entry = this.live.get(id);
    if (!entry) return undefined;
    if (entry.timer) clearTimeout(entry.timer);
    this.live.delete(id);
    this.ended.set(id, reason);
    if (this.ended.size > ENDED_MEMORY) this.ended.delete(this.ended.keys().next().value!);
    return snapshot(entry);
  }

  list(): Ticket[] {
    this.expireOverdue();
    return [...this.live.values()].map(snapshot);
  }

  /** Ends every live ticket and stops its timer (manager shutdown); the manager frees what they held. */
  endAll(): Ticket[] {
    return [...this.live.keys()].map((id) => this.end(id, 'release')!);
  }

  private entry(id: string, family: string): Entry {
    this.expireOverdue();
    const entry = this.live.get(id);
    if (!entry) {
      const reason = this.ended.get(id);
      if (reason === 'expired') throw new TicketExpiredError(id);
      if (reason) throw new TicketReleasedError(id, reason);
      throw new UnknownTicketError(id);
    }
    if (entry.ticket.family !== family) throw new WrongFamilyError(id, family);
    return entry;
  }

  /** Timers can run late (a busy event loop); the deadline is what counts. */
  private expireOverdue(): void {
    const now = Date.now();
    for (const [id, e] of this.live) if (e.expiresAt !== null && now >= e.expiresAt) this.expire(id);
  }

  private expire(id: string): void {
    const ticket = this.end(id, 'expired');
    if (ticket) this.onExpire(ticket);
  }
}

function snapshot(e: Entry): Ticket {
  const { allocation, ...t } = e.ticket;
  return Object.freeze({
    ...t,
    granted: Object.freeze(t.granted.map((s) => Object.freeze({ ...s }))),
    state: e.state,
    issuedAt: e.issuedAt,
    expiresAt: e.expiresAt,
    ...(allocation === undefined ? {} : { allocation }),
  });
}
