/**
 * The sf_* calls over a GuestChannel. The fork itself breaks the channel: a clone wakes up in a
 * new domain (often on another host) inside its parent's pending sf_clone, and the parent may be
 * resumed with a dead channel too. So sf_clone and sf_exit reconnect
 * and send the same request again, with the same requestId, until they get an answer or
 * retryForMs passes: the master answers a resent clone exactly as the first (0 in the parent,
 * its vmid in a clone). Calls that are not safe to repeat (request_ticket, join, kill) are sent
 * once; their errors go to the caller.
 */
import { randomBytes } from 'node:crypto';
import { SfError } from '../daemon/errors.js';
import type { CloneResult, EndReport, GuestRequests, GuestResults, StatusResult, TicketInfo } from '../daemon/protocol.js';
import type { Connect, GuestChannel } from './channel.js';
import { startWorkers, type WorkerGroup, type WorkerSpec } from './hierarchical.js';
import { readdressChild, snapshotLinks } from './clone-network.js';
import { vmIdentity } from './vm-identity.js';

export interface SfClientOptions {
  /**
   * How long clone and exit keep retrying through a dropped channel. Default 120 s. The window
   * starts again in a clone: it wakes up inside its parent's call, however long the fork took.
   */
  retryForMs?: number;
  retryDelayMs?: number;
  /** Which VM this runs in (vm-identity.ts); a change means this is now a clone. */
  identity?: () => string | null;
}

/** A ticket id, or what sf_request_ticket returned. */
export type TicketRef = string | { ticket: string };

export interface CloneOptions {
  /** With a hierarchical ticket: the worker each child starts per extra vCPU (hierarchical.ts). */
  workers?: WorkerSpec;
  /**
   * In a child, move the IPv4 addresses of links that got a new MAC to the parent's address
   * plus the vmid (clone-network.ts). Default true; false leaves addressing to the program.
   */
  readdress?: boolean;
}

export class SfClient {
  private channel: GuestChannel | null = null;
  private workers: WorkerGroup | null = null;

  constructor(private readonly connect: Connect, private readonly o: SfClientOptions = {}) {}

  requestTicket(n: number, opts: { hierarchical?: boolean } = {}): Promise<TicketInfo> {
    return this.once('request_ticket', { n, ...(opts.hierarchical === undefined ? {} : { hierarchical: opts.hierarchical }) });
  }

  /** 0 in the parent, 1..m in the children. */
  async clone(ticket: TicketRef, opts: CloneOptions = {}): Promise<number> {
    return (await this.cloneDetailed(ticket, opts)).vmid;
  }

  async cloneDetailed(ticket: TicketRef, opts: CloneOptions = {}): Promise<CloneResult & { readdressed?: string[] }> {
    // Only a Xen guest's links are vifs dom0 re-plugs for its clones.
    const links = opts.readdress === false || vmIdentity() === null ? [] : snapshotLinks();
    const r = await this.retrying('clone', { ticket: ticketId(ticket), requestId: randomBytes(12).toString('base64url') });
    const readdressed = r.vmid > 0 && links.length ? await readdressChild(links, r.vmid) : [];
    // The host daemon keeps a clone's vifs off the bridge until it no longer holds the parent's
    // address (lib/xen/clone-nic.ts, plugCloneNics); with readdress: false the program owns that.
    if (r.vmid > 0) await this.retrying('network_ready', {});
    if (r.vmid > 0 && r.hierarchical && opts.workers) this.workers = startWorkers(opts.workers, r);
    return readdressed.length ? { ...r, readdressed } : r;
  }

  /** A child is done. Waits for its hierarchical workers first. The parent's join destroys the VM. */
  async exit(): Promise<void> {
    if (this.workers) await this.workers.done;
    await this.retrying('exit', {});
  }

  /** Waits until every child exited (or is lost), then they are destroyed and the ticket is released. */
  join(ticket: TicketRef): Promise<EndReport> {
    return this.once('join', { ticket: ticketId(ticket) });
  }

  /** Destroys the children now. */
  kill(ticket: TicketRef): Promise<EndReport> {
    return this.once('kill', { ticket: ticketId(ticket) });
  }

  status(): Promise<StatusResult> {
    return this.once('status', {});
  }

  hosts(): Promise<GuestResults['hosts']> {
    return this.once('hosts', {});
  }

  list(): Promise<GuestResults['list']> {
    return this.once('list', {});
  }

  close(): void {
    this.channel?.close();
    this.channel = null;
  }

  private async chan(): Promise<GuestChannel> {
    if (!this.channel || this.channel.closed) this.channel = await this.connect();
    return this.channel;
  }

  private async once<K extends keyof GuestResults>(type: K, body: GuestRequests[K]): Promise<GuestResults[K]> {
    return (await this.chan()).request(type, body);
  }

  private async retrying<K extends keyof GuestResults>(type: K, body: GuestRequests[K]): Promise<GuestResults[K]> {
    const retryFor = this.o.retryForMs ?? 120_000;
    const identity = this.o.identity ?? vmIdentity;
    let deadline = Date.now() + retryFor;
    let vm = identity();
    for (;;) {
      try {
        return await (await this.chan()).request(type, body);
      } catch (e) {
        const now = identity();
        if (now !== vm) {
          vm = now;
          deadline = Date.now() + retryFor;
        }
        if (!retriable(e) || Date.now() >= deadline) throw e;
        this.close();
        await new Promise((r) => setTimeout(r, this.o.retryDelayMs ?? 200));
      }
    }
  }
}

function retriable(e: unknown): boolean {
  return e instanceof SfError && (e.code === 'channel-closed' || e.code === 'master-unavailable');
}

function ticketId(t: TicketRef): string {
  return typeof t === 'string' ? t : t.ticket;
}
