/**
 * The master's books: fork families and the indexes the rules need. A family is one parent VM
 * (host + domid); each ticket it clones with becomes a fork with children 1..m. The books only
 * record; master.ts decides.
 */
import type { Ticket } from '../cluster/types.js';
import type { ChildState, EndReport, FamilyView, ForkInfo, Role } from './messages.js';

export interface Caller {
  host: string;
  domid: number;
}

export interface Child {
  vmid: number;
  host: string;
  /** Known once its host built it. */
  domid: number | null;
  state: ChildState;
  vcpus: number;
  /** Why it stopped running without sf_exit, once its host said so. */
  died?: string;
}

/** How many finished forks are remembered, so a late resend or join gets a precise answer. */
const ENDED_MEMORY = 4096;

export interface EndedFork {
  family: string;
  requestId: string;
  /** The error a failed fork ended with, for a resent sf_clone. */
  error: Error | null;
  report: EndReport | null;
}

export class Fork {
  state: 'forking' | 'running' | 'ending' = 'forking';
  readonly children: Child[];
  /** Settles when the fork is complete (clones running) or failed (nothing left of it). */
  forked: Promise<void> = Promise.resolve();
  ending: Promise<EndReport> | null = null;

  constructor(readonly family: Family, readonly ticket: Ticket, readonly requestId: string) {
    this.children = ticket.granted.map((s, i) => ({ vmid: i + 1, host: s.host, domid: null, state: 'building', vcpus: s.vcpus }));
  }

  get info(): ForkInfo {
    return { fork: this.ticket.id, family: this.family.id, clones: this.children.length };
  }

  /** Every child exited, or is beyond reach: join may proceed. */
  allFinished(): boolean {
    return this.children.every((c) => c.state === 'exited' || c.state === 'died' || c.state === 'lost' || c.state === 'destroyed');
  }
}

export class Family {
  /** Tickets granted to this family that no sf_clone used yet. */
  readonly granted = new Map<string, Ticket>();
  readonly forks = new Map<string, Fork>();

  constructor(readonly id: string, readonly parent: Caller) {}

  get idle(): boolean {
    return this.granted.size === 0 && this.forks.size === 0;
  }

  view(): FamilyView {
    const tickets: FamilyView['tickets'] = [...this.granted.values()].map((t) => ({ ticket: t.id, granted: t.granted.length, state: 'granted' }));
    const children: FamilyView['children'] = [];
    for (const f of this.forks.values()) {
      tickets.push({ ticket: f.ticket.id, granted: f.children.length, state: f.state });
      for (const c of f.children) children.push({ ticket: f.ticket.id, vmid: c.vmid, host: c.host, domid: c.domid, state: c.state });
    }
    return { family: this.id, parent: { ...this.parent }, tickets, children };
  }
}

export class Books {
  readonly families = new Map<string, Family>();
  /** Live children by "host/domid": how a request from a clone is recognised. */
  private readonly children = new Map<string, { fork: Fork; child: Child }>();
  /** Family of every live ticket (granted or in use): "another family's ticket" is told apart from "unknown". */
  readonly ticketOwner = new Map<string, string>();
  private readonly ended = new Map<string, EndedFork>();

  static familyId(c: Caller): string {
    return `${c.host}:${c.domid}`;
  }

  family(c: Caller): Family | undefined {
    return this.families.get(Books.familyId(c));
  }

  ensureFamily(c: Caller): Family {
    const id = Books.familyId(c);
    let f = this.families.get(id);
    if (!f) this.families.set(id, (f = new Family(id, { ...c })));
    return f;
  }

  childOf(c: Caller): { fork: Fork; child: Child } | undefined {
    return this.children.get(`${c.host}/${c.domid}`);
  }

  roleOf(c: Caller): Role {
    if (this.childOf(c)) return 'child';
    return this.family(c) ? 'parent' : 'none';
  }

  addChild(fork: Fork, child: Child): void {
    if (child.domid !== null) this.children.set(`${child.host}/${child.domid}`, { fork, child });
  }

  dropChild(child: Child): void {
    if (child.domid === null) return;
    const key = `${child.host}/${child.domid}`;
    if (this.children.get(key)?.child === child) this.children.delete(key);
  }

  /** Live children on one host (by domid). */
  childrenOn(host: string): { fork: Fork; child: Child }[] {
    return [...this.children.values()].filter((e) => e.child.host === host);
  }

  endFork(fork: Fork, record: Omit<EndedFork, 'family' | 'requestId'>): void {
    for (const c of fork.children) this.dropChild(c);
    fork.family.forks.delete(fork.ticket.id);
    this.ticketOwner.delete(fork.ticket.id);
    this.ended.set(fork.ticket.id, { family: fork.family.id, requestId: fork.requestId, ...record });
    if (this.ended.size > ENDED_MEMORY) this.ended.delete(this.ended.keys().next().value!);
    if (fork.family.idle) this.families.delete(fork.family.id);
  }

  endedFork(ticket: string): EndedFork | undefined {
    return this.ended.get(ticket);
  }
}
