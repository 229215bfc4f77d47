/**
 * The master's network side: accepts host daemons on TCP, runs the key handshake, takes the
 * host's registration, then passes its requests to the Master and gives the Master a HostLink
 * for commands. A host's name is the one its key proves (auth.ts, host-key.ts), and registers
 * once: a second link for a connected host is refused. A link that closes, or misses a
 * heartbeat, is reported to the Master as down.
 */
import net from 'node:net';
import { authenticateHost } from './auth.js';
import { SfError } from './errors.js';
import { FramedSocket } from './framed-socket.js';
import { GuestLimit } from './guest-limit.js';
import { deriveHostKey } from './host-key.js';
import { reseal } from './image-secrets.js';
import type { Log } from './host-commands.js';
import type { HostLink, Master } from './master.js';
import { daemonRequests, hostResults, type DaemonRequests, type HostCommands, type HostResults } from './protocol.js';
import { RpcPeer } from './rpc.js';

export interface MasterServerOptions {
  master: Master;
  /** The cluster key: every host's key derives from it (host-key.ts). */
  key: Buffer;
  host?: string;
  port?: number;
  /** A host that does not answer a ping within this long is dropped. Default 5 s. */
  heartbeatMs?: number;
  log?: Log;
}

/** A host connects once; a few more from one address are reconnects racing a dead link. */
const MAX_HANDSHAKES_PER_PEER = 8;
/** Requests in progress on one host's link, all its guests together (each guest has its own bound). */
const MAX_IN_FLIGHT_PER_HOST = 1024;

class PeerLink implements HostLink {
  private readonly hostKey: Buffer;

  constructor(readonly host: string, readonly peer: RpcPeer, private readonly clusterKey: Buffer) {
    this.hostKey = deriveHostKey(clusterKey, host);
  }

  async call<K extends keyof HostCommands>(type: K, body: HostCommands[K], timeoutMs: number): Promise<HostResults[K]> {
    // Fork images' secrets are sealed to one host's key: to this host's on the way to it, to the
    // cluster key while the master holds them (image-secrets.ts).
    if (type === 'build') {
      const b = body as HostCommands['build'];
      body = { ...b, image: reseal(b.image, b.fork.fork, this.clusterKey, this.hostKey, 'the fork image') } as HostCommands[K];
    }
    const raw = await this.peer.call(type, body, timeoutMs);
    let result: HostResults[K];
    try {
      result = hostResults[type](raw, 'result') as HostResults[K];
    } catch (e) {
      throw new SfError('internal', `host ${this.host} answered ${type} with a malformed result: ${(e as Error).message}`);
    }
    if (type === 'capture') {
      const r = result as HostResults['capture'];
      const fork = (body as HostCommands['capture']).fork.fork;
      result = { ...r, image: reseal(r.image, fork, this.hostKey, this.clusterKey, `host ${this.host}'s capture`) } as HostResults[K];
    }
    return result;
  }
}

export class MasterServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly registered = new Map<string, FramedSocket>();
  /** Connections still in the key handshake, per remote address. */
  private readonly handshaking = new Map<string, number>();
  private readonly log: Log;

  constructor(private readonly o: MasterServerOptions) {
    this.log = o.log ?? (() => {});
    this.server = net.createServer({ allowHalfOpen: true }, (s) => {
      this.accept(s).catch((e) => this.log('connection-failed', { error: (e as Error).message }));
    });
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port ?? 0, this.o.host ?? '127.0.0.1', () => {
        const a = this.server.address() as net.AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  async close(): Promise<void> {
    this.o.master.close();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async accept(socket: net.Socket): Promise<void> {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    const address = socket.remoteAddress ?? '?';
    const pending = this.handshaking.get(address) ?? 0;
    if (pending >= MAX_HANDSHAKES_PER_PEER) {
      this.log('auth-refused', { peer: address, error: `${pending} connections from this address are already in the key handshake` });
      socket.destroy();
      return;
    }
    this.handshaking.set(address, pending + 1);
    const conn = new FramedSocket(socket, `${socket.remoteAddress}:${socket.remotePort}`);
    conn.limitUntilAuthenticated();
    let host: string;
    try {
      host = await authenticateHost(conn, this.o.key);
    } catch (e) {
      this.log('auth-refused', { peer: conn.peer, error: (e as Error).message });
      return;
    } finally {
      const n = this.handshaking.get(address)! - 1;
      if (n > 0) this.handshaking.set(address, n);
      else this.handshaking.delete(address);
    }
    conn.authenticated();
    let link: PeerLink | null = null;
    let heartbeat: NodeJS.Timeout | null = null;
    const guests = new GuestLimit();
    const peer: RpcPeer = new RpcPeer(conn, {
      requests: daemonRequests,
      maxInFlight: MAX_IN_FLIGHT_PER_HOST,
      handle: async (type, body, signal) => {
        if (type === 'register') {
          if (link) throw new SfError('bad-request', 'this host is already registered on this connection');
          const current = this.registered.get(host);
          if (current && !current.closed) {
            // The name is taken by a live link: another daemon claiming it would make the real
            // host's clones lost. A restarted host gets in once its old link closed or missed
            // its heartbeat.
            this.log('register-refused', { host, peer: conn.peer, connected: current.peer });
            setImmediate(() => conn.close(`host ${host} is already connected`));
            throw new SfError('auth-failed', `host ${host} is already connected (from ${current.peer}); a host name registers once`);
          }
          this.registered.set(host, conn);
          link = new PeerLink(host, peer, this.o.key);
          heartbeat = this.heartbeat(peer);
          return this.o.master.hostUp(link, body as DaemonRequests['register']);
        }
        if (!link) throw new SfError('not-authenticated', 'register this host before sending requests');
        const domid = (body as { domid?: number }).domid;
        const handle = () => this.o.master.handle(host, type as keyof DaemonRequests, body, signal);
        return domid === undefined ? handle() : guests.run(domid, handle);
      },
    });
    conn.onClose((reason) => {
      if (heartbeat) clearInterval(heartbeat);
      if (this.registered.get(host) === conn) this.registered.delete(host);
      if (link) this.o.master.hostDown(host, link);
      this.log('host-disconnected', { host, reason });
    });
  }

  private heartbeat(peer: RpcPeer): NodeJS.Timeout {
    const ms = this.o.heartbeatMs ?? 5000;
    let waiting = false;
    const t = setInterval(() => {
      if (waiting) return;
      waiting = true;
      peer.call('ping', {}, ms * 2).then(
        () => { waiting = false; },
        (e: Error) => peer.close(`heartbeat missed: ${e.message}`),
      );
    }, ms);
    t.unref();
    return t;
  }
}
