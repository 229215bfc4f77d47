/**
 * The master: holds tickets (through a ClusterManager) and fork families across hosts, and
 * enforces the sf_* rules:
 *   - a ticket belongs to the family that requested it; a family is one parent VM (host:domid);
 *   - only the parent may request tickets, clone, join and kill; a clone may only sf_exit (and
 *     complete the sf_clone it was born inside: its resent clone is answered with its vmid);
 *   - a ticket clones once; n must be a positive integer; an unused ticket expires (the
 *     manager's ticketTtlMs);
 *   - a fork is all or nothing: if any clone cannot be built or started, none is left;
 *   - join waits until every child exited (or is lost), then has their hosts destroy them and
 *     releases the ticket;
 *   - kill destroys them at once and returns when every host confirmed or destroyTimeoutMs
 *     passed, saying which;
 *   - when a host's link drops, its children are lost: join and kill report them instead of
 *     waiting, and the host destroys them when it registers again.
 * Hosts are reached through HostLink, so the rules can be tested without sockets.
 */
import { InternalClusterManager } from '../cluster/internal.js';
import { InvalidRequestError, TicketInUseError, TicketReleasedError, UnknownTicketError, WrongFamilyError } from '../cluster/errors.js';
import type { ClusterManager, ReleaseReason, Ticket } from '../cluster/types.js';
import { SfError } from './errors.js';
import { Books, Fork, type Caller } from './families.js';
import { ForkSteps } from './fork-steps.js';
import type { Log } from './host-commands.js';
import type {
  CloneResult, DaemonRequests, DaemonResults, EndReport, HostCommands, HostResults, HostView, StatusResult, TicketInfo,
} from './messages.js';
import { Notifier } from './notifier.js';

export interface HostLink {
  readonly host: string;
  call<K extends keyof HostCommands>(type: K, body: HostCommands[K], timeoutMs: number): Promise<HostResults[K]>;
}

export interface MasterOptions {
  cluster: ClusterManager;
  /** How long one host may take to capture, start, or release. Default 60 s. */
  commandTimeoutMs?: number;
  /** How long one host may take to build its clones of a fork. Default 10 min. */
  buildTimeoutMs?: number;
  /** How long join and kill wait for one host to confirm destruction. Default 15 s. */
  destroyTimeoutMs?: number;
  log?: Log;
}

/** list answers at most this many families, so the reply fits one frame. */
const MAX_LISTED = 64;

export class Master {
  private readonly books = new Books();
  private readonly links = new Map<string, HostLink>();
  private readonly capacity = new Map<string, { vcpus: number; memoryMiB: number }>();
  private readonly changes = new Notifier();
  private readonly o: Required<MasterOptions>;
  private readonly steps: ForkSteps;
  private closed = false;

  constructor(options: MasterOptions) {
    this.o = { commandTimeoutMs: 60_000, buildTimeoutMs: 600_000, destroyTimeoutMs: 15_000, log: () => {}, ...options };
    this.steps = new ForkSteps({
      ...this.o,
      link: (host) => this.link(host),
      connected: (host) => this.links.get(host),
      built: (fork, child) => this.books.addChild(fork, child),
    });
  }

  // ---- hosts ----------------------------------------------------------------------------

  /** A host daemon authenticated and registered. Returns the clones it must destroy. */
  hostUp(link: HostLink, reg: DaemonRequests['register']): DaemonResults['register'] {
    const old = this.links.get(link.host);
    if (old && old !== link) this.hostDown(link.host, old);
    this.links.set(link.host, link);
    this.capacity.set(link.host, { vcpus: reg.vcpus, memoryMiB: reg.memoryMiB });
    const cluster = this.o.cluster;
    if (cluster instanceof InternalClusterManager) {
      try {
        cluster.registerHost({ name: link.host, vcpus: reg.vcpus, memoryMiB: reg.memoryMiB });
      } catch {
        // Still registered from before it dropped (its old slots are not all released yet).
      }
    }
    const live = new Set(this.books.childrenOn(link.host).map((e) => e.child.domid));
    const destroy = reg.clones.map((c) => c.domid).filter((d) => !live.has(d));
    this.o.log('host-up', { host: link.host, vcpus: reg.vcpus, memoryMiB: reg.memoryMiB, orphans: destroy });
    return { destroy };
  }

  /** A host's link closed (or was replaced). Its children are lost from now on. */
  hostDown(host: string, link: HostLink): void {
    if (this.links.get(host) !== link) return;
    this.links.delete(host);
    const lost = this.books.childrenOn(host);
    for (const { child } of lost) {
      child.state = 'lost';
      this.books.dropChild(child);
    }
    this.tryRemoveHost(host);
    this.o.log('host-down', { host, lost: lost.map((e) => `${e.fork.ticket.id}/${e.child.vmid}`) });
    this.changes.notify();
  }

  connectedHosts(): string[] {
    return [...this.links.keys()];
  }

  close(): void {
    this.closed = true;
    this.changes.notify();
  }

  // ---- requests from host daemons, on behalf of their guests -------------------------------

  /** signal: the guest gave up (its connection closed); only waits that could last end early. */
  async handle(host: string, type: keyof DaemonRequests, body: unknown, signal?: AbortSignal): Promise<unknown> {
    if (this.closed) throw new SfError('master-unavailable', 'the master is shutting down');
    const b = body as Record<string, unknown>;
    const caller: Caller | null = typeof b.domid === 'number' ? { host, domid: b.domid } : null;
    switch (type) {
      case 'request_ticket': return this.requestTicket(caller!, body as DaemonRequests['request_ticket']);
      case 'clone': return this.clone(caller!, (body as DaemonRequests['clone']).ticket, (body as DaemonRequests['clone']).requestId);
      case 'exit': return this.exit(caller!);
      case 'join': return this.join(caller!, (body as DaemonRequests['join']).ticket, signal);
      case 'kill': return this.kill(caller!, (body as DaemonRequests['kill']).ticket);
      case 'status': return this.status(caller!);
      case 'hosts': return this.hosts();
      case 'list': return this.list(caller);
      case 'clone_ended': return this.cloneEnded(host, body as DaemonRequests['clone_ended']);
      case 'register': throw new SfError('bad-request', 'register is only valid once, right after the handshake');
    }
  }

  async requestTicket(caller: Caller, r: Omit<DaemonRequests['request_ticket'], 'domid'>): Promise<TicketInfo> {
    this.refuseChild(caller, 'request a ticket');
    if (!Number.isSafeInteger(r.n) || r.n <= 0) throw new InvalidRequestError('n', `n must be a positive integer, got ${r.n}`);
    const family = Books.familyId(caller);
    const ticket = await this.o.cluster.requestTicket({
      family, n: r.n, vcpusPerClone: r.vcpus, memoryMiBPerClone: r.memoryMiB, hierarchical: r.hierarchical ?? false,
    });
    const down = [...new Set(ticket.granted.map((s) => s.host))].filter((h) => !this.links.has(h));
    if (down.length > 0) {
      await this.o.cluster.releaseTicket(ticket.id, family, 'release');
      throw new SfError('host-unavailable', `the cluster manager placed clones on ${down.join(', ')}, which ${down.length > 1 ? 'are' : 'is'} not connected; try again`);
    }
    const spares = this.books.ensureFamily(caller);
    spares.granted.set(ticket.id, ticket);
    this.books.ticketOwner.set(ticket.id, family);
    if (ticket.expiresAt !== null) {
      // Forgotten when it expires unused, not only when someone lists the families.
      setTimeout(() => this.pruneExpired(spares), Math.max(0, ticket.expiresAt - Date.now()) + 1).unref();
    }
    return {
      ticket: ticket.id, requested: ticket.requested, granted: ticket.granted.length, hierarchical: ticket.hierarchical,
      expiresAt: ticket.expiresAt, hosts: ticket.granted.map((s) => s.host),
    };
  }

  async clone(caller: Caller, ticketId: string, requestId: string): Promise<CloneResult> {
    const asChild = this.books.childOf(caller);
    if (asChild) {
      // A clone completing the sf_clone it was born inside (its channel died with the fork).
      if (asChild.fork.ticket.id !== ticketId) throw notParent('clone');
      return { vmid: asChild.child.vmid, clones: asChild.fork.children.length, hierarchical: asChild.fork.ticket.hierarchical, vcpus: asChild.child.vcpus };
    }
    const familyId = Books.familyId(caller);
    const family = this.books.family(caller);
    const existing = family?.forks.get(ticketId);
    if (existing) {
      // The same call resent (the parent's channel dropped across the fork) gets the same answer.
      if (existing.requestId !== requestId) throw new TicketInUseError(ticketId);
      await existing.forked;
      return this.parentResult(existing);
    }
    const ended = this.books.endedFork(ticketId);
    if (ended && ended.family === familyId && ended.requestId === requestId && ended.error) throw ended.error;
    let ticket: Ticket;
    try {
      ticket = await this.o.cluster.useTicket(ticketId, familyId);
    } catch (e) {
      if (this.books.ticketOwner.get(ticketId) === familyId) this.books.ticketOwner.delete(ticketId); // expired or gone
      throw e;
    } finally {
      family?.granted.delete(ticketId); // used, expired or gone: no longer a spare ticket
    }
    const fork = new Fork(this.books.ensureFamily(caller), ticket, requestId);
    fork.family.forks.set(ticketId, fork);
    fork.forked = this.runFork(fork);
    await fork.forked;
    return this.parentResult(fork);
  }

  async exit(caller: Caller): Promise<{ vmid: number }> {
    const e = this.books.childOf(caller);
    if (!e) throw new SfError('not-child', 'only a clone may sf_exit, and this VM is not a clone of any live family');
    if (e.child.state === 'building' || e.child.state === 'running') e.child.state = 'exited';
    this.changes.notify();
    return { vmid: e.child.vmid };
  }

  /** A clone's host saw it stop without sf_exit: join need not wait for it, and reports it. */
  cloneEnded(host: string, r: DaemonRequests['clone_ended']): Record<string, never> {
    const e = this.books.childOf({ host, domid: r.domid });
    if (e && (e.child.state === 'building' || e.child.state === 'running')) {
      e.child.state = 'died';
      e.child.died = r.reason;
      this.o.log('clone-died', { fork: e.fork.ticket.id, vmid: e.child.vmid, host, domid: r.domid, reason: r.reason });
      this.changes.notify();
    }
    return {};
  }

  async join(caller: Caller, ticketId: string, signal?: AbortSignal): Promise<EndReport> {
    const fork = this.parentFork(caller, ticketId, 'join');
    await fork.forked;
    await this.changes.wait(() => this.closed || fork.ending !== null || fork.allFinished(), signal);
    if (!fork.ending && this.closed) throw new SfError('master-unavailable', 'the master is shutting down');
    fork.ending ??= this.end(fork, 'join');
    return fork.ending;
  }

  async kill(caller: Caller, ticketId: string): Promise<EndReport> {
    const fork = this.parentFork(caller, ticketId, 'kill');
    await fork.forked;
    fork.ending ??= this.end(fork, 'kill');
    return fork.ending;
  }

  status(caller: Caller): StatusResult {
    const asChild = this.books.childOf(caller);
    if (asChild) {
      return { ...caller, role: 'child', family: asChild.fork.family.id, vmid: asChild.child.vmid, ticket: asChild.fork.ticket.id };
    }
    const family = this.books.family(caller);
    return { ...caller, role: family ? 'parent' : 'none', family: family?.id ?? null, vmid: family ? 0 : null, ticket: null };
  }

  async hosts(): Promise<DaemonResults['hosts']> {
    const usage = new Map(((await this.o.cluster.describe()).hosts ?? []).map((h) => [h.name, h]));
    const hosts: HostView[] = [...this.capacity.entries()].map(([name, cap]) => {
      const u = usage.get(name);
      return { name, connected: this.links.has(name), ...cap, ...(u ? { usedVcpus: u.usedVcpus, usedMemoryMiB: u.usedMemoryMiB } : {}) };
    });
    return { hosts };
  }

  /** A guest sees its own family only; a daemon asking without a domid sees all. */
  list(caller: Caller | null): DaemonResults['list'] {
    let families = [...this.books.families.values()];
    if (caller) {
      const mine = this.books.childOf(caller)?.fork.family ?? this.books.family(caller);
      families = mine ? [mine] : [];
    }
    for (const f of families) this.pruneExpired(f);
    return { families: families.slice(0, MAX_LISTED).map((f) => f.view()), truncated: families.length > MAX_LISTED };
  }

  // ---- the fork --------------------------------------------------------------------------

  private async runFork(fork: Fork): Promise<void> {
    try {
      await this.steps.make(fork);
    } catch (e) {
      return this.failFork(fork, (e as Error).message);
    }
    fork.state = 'running';
    this.o.log('forked', { fork: fork.ticket.id, family: fork.family.id, clones: fork.children.map((c) => `${c.vmid}@${c.host}/${c.domid}`) });
    await this.steps.releaseParent(fork);
  }

  /** Aborts the fork on its hosts, gives the ticket back, and throws clone-failed. */
  private async failFork(fork: Fork, why: string): Promise<never> {
    fork.state = 'ending';
    await this.steps.abort(fork);
    await this.release(fork, 'kill');
    const error = new SfError('clone-failed', `sf_clone with ${fork.ticket.id} failed (its clones are destroyed, its ticket released): ${why}`);
    this.books.endFork(fork, { error, report: null });
    this.o.log('fork-failed', { fork: fork.ticket.id, family: fork.family.id, why });
    this.changes.notify();
    throw error;
  }

  /** Join or kill: destroy every child still reachable, release the ticket, report. */
  private async end(fork: Fork, reason: 'join' | 'kill'): Promise<EndReport> {
    fork.state = 'ending';
    this.changes.notify();
    const unconfirmed = await this.steps.destroy(fork);
    // A clone not confirmed gone (or on a host that dropped out) may still read its disks: their fronts stay.
    if (unconfirmed.length === 0 && fork.children.every((c) => c.state === 'destroyed')) await this.steps.end(fork);
    await this.release(fork, reason);
    const report: EndReport = {
      ticket: fork.ticket.id,
      outcome: reason === 'join' ? 'joined' : 'killed',
      clones: fork.children.length,
      destroyed: fork.children.filter((c) => c.state === 'destroyed').map((c) => c.vmid),
      lost: fork.children.filter((c) => c.state === 'lost').map((c) => ({ vmid: c.vmid, host: c.host })),
      unconfirmed,
      died: fork.children.filter((c) => c.died !== undefined).map((c) => ({ vmid: c.vmid, host: c.host, reason: c.died! })),
    };
    this.books.endFork(fork, { error: null, report });
    this.o.log(reason === 'join' ? 'joined' : 'killed', { fork: fork.ticket.id, family: fork.family.id, destroyed: report.destroyed, lost: report.lost, unconfirmed });
    this.changes.notify();
    return report;
  }

  private async release(fork: Fork, reason: ReleaseReason): Promise<void> {
    try {
      await this.o.cluster.releaseTicket(fork.ticket.id, fork.family.id, reason);
    } catch (e) {
      this.o.log('ticket-release-failed', { fork: fork.ticket.id, error: (e as Error).message });
    }
    for (const host of new Set(fork.children.map((c) => c.host))) if (!this.links.has(host)) this.tryRemoveHost(host);
  }

  // ---- rules -------------------------------------------------------------------------------

  private refuseChild(caller: Caller, what: string): void {
    if (this.books.childOf(caller)) throw notParent(what);
  }

  /** The caller's fork for this ticket, or the error saying why there is none. */
  private parentFork(caller: Caller, ticketId: string, what: 'join' | 'kill'): Fork {
    this.refuseChild(caller, what);
    const familyId = Books.familyId(caller);
    const fork = this.books.family(caller)?.forks.get(ticketId);
    if (fork) return fork;
    const owner = this.books.ticketOwner.get(ticketId);
    if (owner !== undefined && owner !== familyId) throw new WrongFamilyError(ticketId, familyId);
    if (owner === familyId) throw new SfError('ticket-not-used', `ticket ${ticketId} was not used by sf_clone: there is nothing to ${what}`);
    const ended = this.books.endedFork(ticketId);
    if (ended && ended.family !== familyId) throw new WrongFamilyError(ticketId, familyId);
    if (ended?.report) throw new TicketReleasedError(ticketId, ended.report.outcome === 'joined' ? 'join' : 'kill');
    if (ended) throw new TicketReleasedError(ticketId, 'kill');
    throw new UnknownTicketError(ticketId);
  }

  private parentResult(fork: Fork): CloneResult {
    return { vmid: 0, clones: fork.children.length, hierarchical: fork.ticket.hierarchical, vcpus: fork.ticket.granted[0]?.vcpus ?? 1 };
  }

  private link(host: string): HostLink {
    const l = this.links.get(host);
    if (!l) throw new SfError('host-unavailable', `host ${host} is not connected to the master`);
    return l;
  }

  private pruneExpired(f: { granted: Map<string, Ticket> }): void {
    const now = Date.now();
    for (const [id, t] of f.granted) {
      if (t.expiresAt !== null && t.expiresAt <= now) {
        f.granted.delete(id);
        this.books.ticketOwner.delete(id);
      }
    }
  }

  private tryRemoveHost(host: string): void {
    const cluster = this.o.cluster;
    if (!(cluster instanceof InternalClusterManager) || this.links.has(host)) return;
    try {
      cluster.removeHost(host);
      this.capacity.delete(host);
    } catch {
      // It still holds slots of live tickets; retried when they are released.
    }
  }
}

function notParent(what: string): SfError {
  return new SfError('not-parent', `a clone may only sf_exit; only the parent VM may ${what}`);
}
