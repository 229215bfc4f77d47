/**
 * A cluster manager backed by a real Slurm: one ticket is one Slurm allocation of up to n nodes,
 * one clone slot per node, held by a job with no processes (salloc --no-shell) until the
 * ticket ends, then scancel'ed. Slurm does the accounting of CPUs and memory; this class keeps
 * the ticket ledger (family, expiry) and maps node names to snowflock hosts.
 */
import { BackendError, ManagerClosedError, NoCapacityError, SlotTooLargeError } from '../errors.js';
import { TicketBook, newTicketId } from '../ticket-book.js';
import { checkFamily, checkTicketRequest } from '../validate.js';
import {
  DEFAULT_MAX_CLONES_PER_TICKET, DEFAULT_TICKET_TTL_MS,
  type ClusterDescription, type ClusterManager, type HostSlot, type ReleaseReason, type Ticket,
  type TicketPolicy, type TicketRequest,
} from '../types.js';
import { SlurmCli, SlurmCommandError } from './commands.js';
import { allocationRefusal, type SlurmJob } from './parse.js';
import type { CommandRunner } from '../run.js';

export interface SlurmManagerOptions extends TicketPolicy {
  /** SLURM_CONF for Slurm's commands; default: the environment's. */
  slurmConf?: string;
  partition?: string;
  /**
   * Slurm node name → snowflock host. Without it a node's name is the host's name. With it,
   * a node missing from the map is an error (and the allocation is cancelled), so a clone is
   * never sent to a host nobody named.
   */
  hostOfNode?: Readonly<Record<string, string>>;
  /** Prefix of the Slurm job name; the ticket id follows. Default "snowflock-". */
  jobNamePrefix?: string;
  /** Deadline for one Slurm command. Default 30 s. */
  commandTimeoutMs?: number;
  binDir?: string;
  /** Replaces process spawning (unit tests). */
  runner?: CommandRunner;
  /** Where failures that no caller waits for go (cancelling an expired ticket). Default: stderr. */
  log?: (message: string) => void;
}

export class SlurmClusterManager implements ClusterManager {
  private readonly cli: SlurmCli;
  private readonly book: TicketBook;
  private readonly maxClones: number;
  private readonly releasing = new Map<string, Promise<void>>();
  /** Cancels of expired tickets still running; close() waits for them. */
  private readonly expiring = new Set<Promise<void>>();
  private readonly log: (message: string) => void;
  private closed = false;

  constructor(private readonly opts: SlurmManagerOptions = {}) {
    this.cli = new SlurmCli({ slurmConf: opts.slurmConf, binDir: opts.binDir, timeoutMs: opts.commandTimeoutMs ?? 30_000, runner: opts.runner });
    this.maxClones = opts.maxClonesPerTicket ?? DEFAULT_MAX_CLONES_PER_TICKET;
    this.log = opts.log ?? ((m) => process.stderr.write(`snowflock: cluster/slurm: ${m}\n`));
    this.book = new TicketBook(opts.ticketTtlMs ?? DEFAULT_TICKET_TTL_MS, (t) => this.cancelExpired(t), opts.maxTicketsPerFamily);
  }

  async requestTicket(req: TicketRequest): Promise<Ticket> {
    if (this.closed) throw new ManagerClosedError();
    const r = checkTicketRequest(req, this.maxClones);
    this.book.checkRoom(r.family);
    const id = newTicketId();
    const jobName = `${this.opts.jobNamePrefix ?? 'snowflock-'}${id}`;
    let jobId: string;
    try {
      jobId = await this.cli.allocate({
        jobName, comment: `snowflock family ${r.family}`, minNodes: 1, maxNodes: r.n,
        cpusPerNode: r.vcpusPerClone, memoryMiBPerNode: r.memoryMiBPerClone, partition: this.opts.partition,
      });
    } catch (e) {
      throw await this.allocationFailure(e, jobName, r);
    }
    let granted: HostSlot[];
    try {
      granted = this.slotsOf(await this.cli.showJob(jobId), r);
      if (this.closed) throw new ManagerClosedError(); // closed while salloc ran: close() could not see this one
    } catch (e) {
      await this.cli.cancel(jobId).catch((c: Error) => this.log(`job ${jobId} may be left allocated: ${c.message}`));
      throw e;
    }
    return this.book.issue({ id, family: r.family, requested: r.n, granted, hierarchical: r.hierarchical, allocation: jobId });
  }

  async useTicket(ticketId: string, family: string): Promise<Ticket> {
    checkFamily(family);
    return this.book.markInUse(ticketId, family);
  }

  /** The ticket leaves the book only once scancel succeeded; a failed release can be retried. */
  async releaseTicket(ticketId: string, family: string, reason: ReleaseReason = 'release'): Promise<void> {
    checkFamily(family);
    const pending = this.releasing.get(ticketId);
    if (pending) {
      this.book.get(ticketId, family);
      return pending;
    }
    const ticket = this.book.get(ticketId, family);
    const done = this.cli.cancel(ticket.allocation!).then(() => void this.book.end(ticketId, reason))
      .finally(() => this.releasing.delete(ticketId));
    this.releasing.set(ticketId, done);
    return done;
  }

  async describe(): Promise<ClusterDescription> {
    return { manager: 'slurm', tickets: this.book.list() };
  }

  /** Cancels every live ticket's allocation; throws the first failure after trying them all. */
  async close(): Promise<void> {
    this.closed = true;
    const results = await Promise.allSettled([
      ...this.book.endAll().map((t) => this.cli.cancel(t.allocation!)),
      ...this.releasing.values(),
      ...this.expiring,
    ]);
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private slotsOf(job: SlurmJob, r: Required<TicketRequest>): HostSlot[] {
    if (job.state !== 'RUNNING' && job.state !== 'CONFIGURING') {
      throw new BackendError(`Slurm job ${job.jobId} is ${job.state}, not running, right after salloc granted it`);
    }
    if (job.nodes.length === 0 || job.nodes.length > r.n) {
      throw new BackendError(`Slurm job ${job.jobId} holds ${job.nodes.length} nodes for a request of 1-${r.n}`);
    }
    return job.nodes.map((node) => {
      // Slurm enforced the requested size per node; --details says what it actually set aside.
      const held = job.perNode.get(node);
      return { host: this.hostOf(node), vcpus: held?.cpus ?? r.vcpusPerClone, memoryMiB: held?.memoryMiB ?? r.memoryMiBPerClone };
    });
  }

  private hostOf(node: string): string {
    const map = this.opts.hostOfNode;
    if (!map) return node;
    const host = map[node];
    if (host === undefined) throw new BackendError(`Slurm node ${node} has no snowflock host in hostOfNode`);
    return host;
  }

  /** Turns salloc's refusal into the cluster error it means; cleans up when the outcome is unknown. */
  private async allocationFailure(e: unknown, jobName: string, r: Required<TicketRequest>): Promise<unknown> {
    if (!(e instanceof SlurmCommandError)) return e;
    if (e.exitCode === null) {
      // Killed on timeout: Slurm may have granted it after all. The job name is unique to this ticket.
      await this.cli.cancelByName(jobName).catch((c: Error) => this.log(`after salloc timed out, job ${jobName} may be left allocated: ${c.message}`));
      return e;
    }
    const size = `${r.vcpusPerClone} vCPUs and ${r.memoryMiBPerClone} MiB`;
    switch (allocationRefusal(e.stderr)) {
      case 'busy':
        return new NoCapacityError(`Slurm has no free node for a clone of ${size}: ${e.message}`, { cause: e });
      case 'impossible':
        return new SlotTooLargeError(`no Slurm node can hold a clone of ${size}: ${e.message}`, { cause: e });
      default:
        return e;
    }
  }

  private cancelExpired(t: Ticket): void {
    const p = this.cli.cancel(t.allocation!)
      .catch((e: Error) => this.log(`expired ticket ${t.id}: job ${t.allocation} not cancelled: ${e.message}`))
      .finally(() => this.expiring.delete(p));
    this.expiring.add(p);
  }
}
