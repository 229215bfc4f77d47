/**
 * The per-host (dom0) daemon. It serves the guests of this host through a GuestTransport and
 * forwards their sf_* requests to the master with the domid the transport vouches for; it keeps
 * one authenticated link to the master, over which the master drives this host's CloneBackend.
 * When the link drops it releases parents stopped mid-fork and reconnects with backoff; on every
 * (re)registration it reports the clones it holds and destroys the ones the master disowns.
 */
import net from 'node:net';
import { authenticateToMaster } from './auth.js';
import type { CloneBackend, DomainSize } from './backend.js';
import { SfError } from './errors.js';
import { FramedSocket, type MessageConnection } from './framed-socket.js';
import type { GuestTransport } from './guest-transport.js';
import { HostCommandRunner, type Log } from './host-commands.js';
import { Notifier } from './notifier.js';
import { guestRequests, hostCommands, type DaemonResults, type GuestRequests, type HostCommands } from './protocol.js';
import { AdminServer } from './admin-socket.js';
import { GuestLimit } from './guest-limit.js';
import type { AdminResults } from './messages.js';
import { RpcPeer } from './rpc.js';

export interface HostDaemonOptions {
  /** This host's name in the cluster (the cluster manager places clones by it). */
  host: string;
  /** This host's own key (host-key.ts): it proves `host` to the master, and no other name. */
  hostKey: Buffer;
  master: { host: string; port: number };
  backend: CloneBackend;
  guests: GuestTransport;
  /** What clones may use on this host. */
  capacity: DomainSize;
  /** First reconnect delay; doubles up to 30 s. Default 1 s. */
  reconnectMs?: number;
  /**
   * The master pings every few seconds; a link silent this long is presumed dead (a master that
   * vanished without closing its socket) and dropped. Default 30 s.
   */
  masterSilenceMs?: number;
  /** How often the backend is asked whether clones still run (ended()). Default 2 s. */
  cloneWatchMs?: number;
  /** A Unix socket for dom0's CLI (admin-socket.ts); none when left out. */
  adminSocket?: string;
  log?: Log;
}

const MAX_RECONNECT_MS = 30_000;
/**
 * How long a guest's request may wait for the master. join waits for the clones' work, however
 * long, and ends only with the guest's connection; a fork is bounded by the master's own step
 * timeouts (capture, build), so its limit is above theirs.
 */
const FORWARD_TIMEOUT_MS: Partial<Record<keyof GuestRequests, number>> = { clone: 20 * 60_000 };
const DEFAULT_FORWARD_TIMEOUT_MS = 2 * 60_000;

export class HostDaemon {
  private readonly runner: HostCommandRunner;
  private readonly log: Log;
  private master: RpcPeer | null = null;
  /** The current connection to the master, registered or not yet. */
  private link: FramedSocket | null = null;
  private readonly changes = new Notifier();
  private retryTimer: NodeJS.Timeout | null = null;
  private delay: number;
  private closing = false;
  private readonly guestConns = new Set<MessageConnection>();
  private cloneWatch: NodeJS.Timeout | null = null;
  private admin: AdminServer | null = null;
  private readonly startedAt = Date.now();
  /** Clones whose end the master has been told of. */
  private readonly reportedEnded = new Set<number>();
  /** Each guest's share of the link to the master. */
  private readonly guestLimit = new GuestLimit();

  constructor(private readonly o: HostDaemonOptions) {
    this.log = o.log ?? (() => {});
    this.delay = o.reconnectMs ?? 1000;
    this.runner = new HostCommandRunner(o.backend, this.log, (domid) => o.guests.admit?.(domid), (domid) => o.guests.dismiss?.(domid));
  }

  get connected(): boolean {
    return this.master !== null;
  }

  /** Recovers what a previous run left, starts serving guests, and connects to the master. */
  async start(): Promise<void> {
    await this.runner.recover();
    if (this.o.adminSocket) {
      this.admin = new AdminServer(this.o.adminSocket, {
        status: () => this.status(),
        hosts: () => this.askMaster('hosts'),
        families: () => this.askMaster('list'),
      });
      await this.admin.listen();
    }
    await this.o.guests.listen((conn, domid) => this.serveGuest(conn, domid));
    this.connect();
    this.cloneWatch = setInterval(() => void this.reportEndedClones(), this.o.cloneWatchMs ?? 2000);
    this.cloneWatch.unref();
  }

  /** Resolves once registered with the master (tests, and callers that must not race the first guest). */
  whenRegistered(): Promise<void> {
    return this.changes.wait(() => this.master !== null || this.closing);
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.cloneWatch) clearInterval(this.cloneWatch);
    await this.admin?.close();
    this.link?.close('host daemon shutting down');
    for (const c of this.guestConns) c.close('host daemon shutting down');
    await this.o.guests.close();
    this.changes.notify();
  }

  /** What `snowflock daemon status` shows. */
  status(): AdminResults['status'] {
    return {
      host: this.o.host,
      master: { address: `${this.o.master.host}:${this.o.master.port}`, connected: this.master !== null },
      clones: [...this.runner.clones.values()].map((c) => ({ domid: c.domid, fork: c.fork, vmid: c.vmid })),
      startedAt: this.startedAt,
    };
  }

  /** The master's cluster-wide views for dom0's CLI (a request without a domid sees every family). */
  private async askMaster<K extends 'hosts' | 'list'>(type: K): Promise<DaemonResults[K]> {
    const master = this.master;
    if (!master) throw new SfError('master-unavailable', `host ${this.o.host} has no link to the master right now (${this.o.master.host}:${this.o.master.port})`);
    return (await master.call(type, {})) as DaemonResults[K];
  }

  /** Tells the master about clones that stopped without sf_exit; retried until it heard. */
  private async reportEndedClones(): Promise<void> {
    for (const domid of this.reportedEnded) if (!this.runner.clones.has(domid)) this.reportedEnded.delete(domid);
    const master = this.master;
    if (!master) return;
    for (const domid of this.runner.clones.keys()) {
      if (this.reportedEnded.has(domid) || this.runner.beingDestroyed(domid)) continue;
      const reason = this.o.backend.ended(domid);
      if (reason === null) continue;
      this.reportedEnded.add(domid);
      this.log('clone-ended', { domid, reason });
      await master.call('clone_ended', { domid, reason }).catch(() => this.reportedEnded.delete(domid));
    }
  }

  private serveGuest(conn: MessageConnection, domid: number): void {
    this.guestConns.add(conn);
    conn.onClose(() => this.guestConns.delete(conn));
    new RpcPeer(conn, {
      requests: guestRequests,
      maxInFlight: 8,
      // A guest's requests end with its connection (signal), so a guest that leaves holds nothing.
      handle: (type, body, signal) => this.guestLimit.run(domid, () => this.forward(domid, type as keyof GuestRequests, body as Record<string, unknown>, signal)),
    });
  }

  private async forward(domid: number, type: keyof GuestRequests, body: Record<string, unknown>, signal: AbortSignal): Promise<unknown> {
    // The one request about this host alone: it needs no master.
    if (type === 'network_ready') {
      const released = await this.o.backend.releaseNetwork(domid).catch((e: Error) => {
        throw new SfError('internal', `host ${this.o.host} cannot put domain ${domid}'s vifs on their bridges: ${e.message}`);
      });
      if (released.length) this.log('clone-network-released', { domid, vifs: released.join(',') });
      return { released };
    }
    const master = this.master;
    if (!master) throw new SfError('master-unavailable', `host ${this.o.host} has no link to the master right now; try again`);
    let request: Record<string, unknown> = { ...body, domid };
    if (type === 'request_ticket') {
      const size = await this.o.backend.describe(domid).catch((e: Error) => {
        throw new SfError('internal', `host ${this.o.host} cannot read the size of domain ${domid}: ${e.message}`);
      });
      request = { ...request, vcpus: size.vcpus, memoryMiB: size.memoryMiB };
    }
    try {
      // join may wait as long as the clones work: it ends when its guest stops listening. The
      // others are bounded by time, and answered even to a guest that half-closed (printf | nc).
      if (type === 'join') return await master.call(type, request, undefined, signal);
      return await master.call(type, request, FORWARD_TIMEOUT_MS[type] ?? DEFAULT_FORWARD_TIMEOUT_MS);
    } catch (e) {
      if (e instanceof SfError && e.code === 'channel-closed') {
        throw new SfError('master-unavailable', `the link to the master dropped during ${type}; try again`);
      }
      throw e;
    }
  }

  private connect(): void {
    this.retryTimer = null;
    if (this.closing) return;
    this.connectOnce().catch((e) => {
      this.log('master-connect-failed', { master: `${this.o.master.host}:${this.o.master.port}`, error: (e as Error).message });
      this.retry();
    });
  }

  private retry(): void {
    if (this.closing || this.retryTimer) return;
    this.retryTimer = setTimeout(() => this.connect(), this.delay);
    this.retryTimer.unref();
    this.delay = Math.min(this.delay * 2, MAX_RECONNECT_MS);
  }

  private async connectOnce(): Promise<void> {
    const socket = net.connect(this.o.master.port, this.o.master.host);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const conn = new FramedSocket(socket, `master ${this.o.master.host}:${this.o.master.port}`);
    this.link = conn;
    if (this.closing) conn.close('host daemon shutting down');
    let linked = false;
    let registered = false;
    conn.onClose((reason) => {
      if (linked) void this.runner.linkLost(); // the master may have sent commands already
      if (!registered) return; // connectOnce's caller retries
      this.master = null;
      this.log('master-lost', { reason });
      this.retry();
    });
    try {
      await authenticateToMaster(conn, this.o.hostKey, this.o.host);
      let heard = Date.now();
      const peer = new RpcPeer(conn, {
        requests: hostCommands,
        handle: (type, body) => {
          heard = Date.now();
          return this.runner.run(type as keyof HostCommands, body as never);
        },
      });
      linked = true;
      const silence = this.o.masterSilenceMs ?? 30_000;
      const watchdog = setInterval(() => {
        if (Date.now() - heard > silence) conn.close(`no word from the master for ${silence} ms`);
      }, Math.min(silence, 5000));
      watchdog.unref();
      conn.onClose(() => clearInterval(watchdog));
      const reg = (await peer.call('register', {
        vcpus: this.o.capacity.vcpus, memoryMiB: this.o.capacity.memoryMiB, clones: [...this.runner.clones.values()],
      }, 30_000)) as DaemonResults['register'];
      if (reg.destroy.length > 0) {
        const r = await this.runner.destroy(reg.destroy);
        this.log('orphans-destroyed', { destroyed: r.destroyed, failed: r.failed });
      }
      if (conn.closed) throw new Error('the master closed the link during registration');
      registered = true;
      this.master = peer;
    } catch (e) {
      conn.close('registration failed');
      throw e;
    }
    this.delay = this.o.reconnectMs ?? 1000;
    this.log('master-connected', { master: `${this.o.master.host}:${this.o.master.port}` });
    this.changes.notify();
  }
}
