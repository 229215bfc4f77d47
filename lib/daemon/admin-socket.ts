/**
 * The host daemon's local admin socket, for dom0's own CLI (`snowflock daemon status`,
 * `snowflock hosts`, `snowflock families`): a Unix socket of mode 600, so only dom0's root (the
 * daemon's user) may ask. It answers what this daemon knows (its link, its clones) and relays
 * the cluster-wide views from the master, without the guests' one-family limit.
 */
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { FramedSocket } from './framed-socket.js';
import { adminRequests, type AdminResults } from './messages.js';
import { RpcPeer } from './rpc.js';
import { SfError } from './errors.js';

export const DEFAULT_ADMIN_SOCKET = '/run/snowflock/host.sock';

export interface AdminHandlers {
  status(): AdminResults['status'];
  hosts(): Promise<AdminResults['hosts']>;
  families(): Promise<AdminResults['families']>;
}

export class AdminServer {
  private readonly server = net.createServer();
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly path: string, private readonly handlers: AdminHandlers) {}

  async listen(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
    if (existsSync(this.path)) {
      if (await answers(this.path)) throw new Error(`another host daemon already listens on ${this.path}`);
      rmSync(this.path); // left by a daemon that died
    }
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      new RpcPeer(new FramedSocket(socket, 'admin client'), {
        requests: adminRequests,
        maxInFlight: 4,
        handle: async (type) => {
          switch (type) {
            case 'status': return this.handlers.status();
            case 'hosts': return this.handlers.hosts();
            case 'families': return this.handlers.families();
            default: throw new SfError('unknown-type', `no admin request ${type}`);
          }
        },
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      // Created with a umask that keeps group and others out, then made sure of.
      const old = process.umask(0o177);
      this.server.listen(this.path, () => {
        process.umask(old);
        chmodSync(this.path, 0o600);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

/** Whether something answers on a Unix socket path (a live daemon, as opposed to a stale file). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** dom0's side: one admin request to the host daemon at `path`. */
export async function askHostDaemon<K extends keyof AdminResults>(path: string, type: K, timeoutMs = 15_000): Promise<AdminResults[K]> {
  const socket = net.connect(path);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (e) => reject(new SfError('channel-closed', `no host daemon answers on ${path}: ${e.message} (is \`snowflock daemon host\` running, as this user?)`)));
  });
  const peer = new RpcPeer(new FramedSocket(socket, `host daemon ${path}`), { requests: {}, handle: async () => undefined });
  try {
    return (await peer.call(type, {}, timeoutMs)) as AdminResults[K];
  } finally {
    peer.conn.close('done');
  }
}
