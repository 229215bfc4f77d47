/**
 * A cluster manager backed by a real Grid Engine (SnowFlock's own): a ticket for up to n clones
 * is one array job of n one-slot holder tasks (one qsub, `-t 1-n`). The tasks Grid Engine starts
 * within startWaitMs are the grant (a running task's queue instance names the host); the rest are
 * deleted, so "up to n" is what the cluster has free now, not a promise. The holders are deleted
 * when the ticket ends. Grid Engine does the slot accounting: a host's queue slots should be
 * the number of clones it can hold (vCPUs and memory per clone are recorded, not enforced).
 */
import { BackendError, ManagerClosedError, NoCapacityError } from '../errors.js';
import { TicketBook, newTicketId } from '../ticket-book.js';
import { checkFamily, checkTicketRequest } from '../validate.js';
import {
  DEFAULT_MAX_CLONES_PER_TICKET, DEFAULT_TICKET_TTL_MS,
  type ClusterDescription, type ClusterManager, type HostSlot, type ReleaseReason, type Ticket,
  type TicketPolicy, type TicketRequest,
} from '../types.js';
import type { CommandRunner } from '../run.js';
import { SgeCli } from './commands.js';
import { heldId, hostOfQueue } from './parse.js';

export interface GridEngineManagerOptions extends TicketPolicy {
  sgeRoot?: string;
  sgeCell?: string;
  /** The queue holder jobs go to (qsub -q); default: any. */
  queue?: string;
  /** Grid Engine host → snowflock host; without it the names are the same. */
  hostOfExecHost?: Readonly<Record<string, string>>;
  /** How long the scheduler gets to start the holders (its schedule_interval, and then some). Default 5 s. */
  startWaitMs?: number;
  jobNamePrefix?: string;
  commandTimeoutMs?: number;
  binDir?: string;
  runner?: CommandRunner;
  log?: (message: string) => void;
}

const POLL_MS = 250;

export class GridEngineClusterManager implements ClusterManager {
  private readonly cli: SgeCli;
  private readonly book: TicketBook;
  private readonly maxClones: number;
  private readonly log: (message: string) => void;
  /** Holder task ids ("job.task") per live ticket. */
  private readonly holders = new Map<string, string[]>();
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly opts: GridEngineManagerOptions = {}) {
    this.cli = new SgeCli({ sgeRoot: opts.sgeRoot, sgeCell: opts.sgeCell, binDir: opts.binDir, timeoutMs: opts.commandTimeoutMs ?? 30_000, runner: opts.runner });
    this.maxClones = opts.maxClonesPerTicket ?? DEFAULT_MAX_CLONES_PER_TICKET;
    this.log = opts.log ?? ((m) => process.stderr.write(`snowflock: cluster/gridengine: ${m}\n`));
    this.book = new TicketBook(opts.ticketTtlMs ?? DEFAULT_TICKET_TTL_MS, (t) => this.track(this.deleteHolders(t.id)), opts.maxTicketsPerFamily);
  }

  async requestTicket(req: TicketRequest): Promise<Ticket> {
    if (this.closed) throw new ManagerClosedError();
    const r = checkTicketRequest(req, this.maxClones);
    this.book.checkRoom(r.family);
    const id = newTicketId();
    const name = `${this.opts.jobNamePrefix ?? 'snowflock-'}${id}`;
    let submitted: string[] = [];
    let running: { jobId: string; host: string }[];
    try {
      submitted = await this.cli.submitHolders({ name, queue: this.opts.queue, comment: r.family, count: r.n });
      running = await this.waitForStarts(submitted);
      if (this.closed) throw new ManagerClosedError();
    } catch (e) {
      await this.cli.delete(submitted).catch((d: Error) => this.log(`holder jobs ${submitted.join(',')} may be left: ${d.message}`));
      throw e;
    }
    const started = new Set(running.map((j) => j.jobId));
    await this.cli.delete(submitted.filter((j) => !started.has(j)));
    if (running.length === 0) {
      throw new NoCapacityError(`Grid Engine started none of ${r.n} one-slot holder tasks within ${this.startWait} ms: every slot${this.opts.queue ? ` of ${this.opts.queue}` : ''} is taken`);
    }
    let granted: HostSlot[];
    try {
      granted = running.map((j) => ({ host: this.hostOf(j.host), vcpus: r.vcpusPerClone, memoryMiB: r.memoryMiBPerClone }));
    } catch (e) {
      await this.cli.delete([...started]).catch(() => {});
      throw e;
    }
    this.holders.set(id, [...started]);
    return this.book.issue({ id, family: r.family, requested: r.n, granted, hierarchical: r.hierarchical, allocation: [...started].join(',') });
  }

  async useTicket(ticketId: string, family: string): Promise<Ticket> {
    checkFamily(family);
    return this.book.markInUse(ticketId, family);
  }

  async releaseTicket(ticketId: string, family: string, reason: ReleaseReason = 'release'): Promise<void> {
    checkFamily(family);
    this.book.get(ticketId, family); // the family's own, live ticket
    await this.deleteHolders(ticketId);
    this.book.end(ticketId, reason);
  }

  async describe(): Promise<ClusterDescription> {
    return { manager: 'gridengine', tickets: this.book.list() };
  }

  async close(): Promise<void> {
    this.closed = true;
    const ended = this.book.endAll();
    const results = await Promise.allSettled([...ended.map((t) => this.deleteHolders(t.id)), ...this.pending]);
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private get startWait(): number {
    return this.opts.startWaitMs ?? 5000;
  }

  /** Polls until every holder task runs or the wait is over; returns the running ones. */
  private async waitForStarts(jobIds: string[]): Promise<{ jobId: string; host: string }[]> {
    const deadline = Date.now() + this.startWait;
    const mine = new Set(jobIds);
    for (;;) {
      const running = (await this.cli.jobs())
        .filter((j) => j.state === 'r' && j.queue && mine.has(heldId(j)))
        .map((j) => ({ jobId: heldId(j), host: hostOfQueue(j.queue!) }));
      if (running.length === jobIds.length || Date.now() >= deadline) return running;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  private async deleteHolders(ticketId: string): Promise<void> {
    const jobs = this.holders.get(ticketId);
    if (!jobs) return;
    await this.cli.delete(jobs);
    this.holders.delete(ticketId);
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((e: Error) => this.log(`an expired ticket's holder jobs may be left: ${e.message}`)).finally(() => this.pending.delete(q));
    this.pending.add(q);
  }

  private hostOf(execHost: string): string {
    const map = this.opts.hostOfExecHost;
    if (!map) return execHost;
    const host = map[execHost];
    if (host === undefined) throw new BackendError(`Grid Engine host ${execHost} has no snowflock host in hostOfExecHost`);
    return host;
  }
}
