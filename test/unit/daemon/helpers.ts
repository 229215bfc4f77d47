// A master with in-process host links over fake backends: the rules without sockets.
import { InternalClusterManager } from '../../../lib/cluster/index.js';
import { SfError } from '../../../lib/daemon/errors.js';
import { FakeBackend } from '../../../lib/daemon/fake-backend.js';
import { HostCommandRunner } from '../../../lib/daemon/host-commands.js';
import { Master, type HostLink } from '../../../lib/daemon/master.js';
import type { HostCommands, HostResults } from '../../../lib/daemon/protocol.js';
import type { Caller } from '../../../lib/daemon/families.js';

/** Like a connection: calls time out, and all of them fail when the link goes down. */
export class LocalLink implements HostLink {
  private readonly pending = new Set<(e: Error) => void>();

  constructor(readonly host: string, readonly runner: HostCommandRunner) {}

  call<K extends keyof HostCommands>(type: K, body: HostCommands[K], timeoutMs: number): Promise<HostResults[K]> {
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => {
        clearTimeout(timer);
        this.pending.delete(fail);
        reject(e);
      };
      const timer = setTimeout(() => fail(new SfError('timeout', `${this.host} did not answer ${type} within ${timeoutMs} ms`)), timeoutMs);
      this.pending.add(fail);
      this.runner.run(type, body).then((r) => {
        clearTimeout(timer);
        if (this.pending.delete(fail)) resolve(r);
      }, fail);
    });
  }

  /** The connection dropped: pending calls fail, the host side releases what it holds. */
  down(): void {
    for (const fail of [...this.pending]) fail(new SfError('channel-closed', `${this.host}: connection closed`));
    void this.runner.linkLost();
  }
}

export interface Lab {
  master: Master;
  cluster: InternalClusterManager;
  fakes: Record<'h1' | 'h2', FakeBackend>;
  links: Record<'h1' | 'h2', LocalLink>;
  parent: Caller;
  /** Drops a host's link (as the master sees a closed connection). */
  drop(host: 'h1' | 'h2'): void;
  /** A new daemon on the same host (same domains) registers again; returns what the master disowned. */
  reconnect(host: 'h1' | 'h2'): Promise<number[]>;
  /** The clones on both fake hosts, as callers. */
  children(): (Caller & { vmid: number })[];
}

export async function lab(o: { ticketTtlMs?: number; destroyTimeoutMs?: number } = {}): Promise<Lab> {
  const cluster = new InternalClusterManager({ ticketTtlMs: o.ticketTtlMs ?? 60_000 });
  const master = new Master({ cluster, destroyTimeoutMs: o.destroyTimeoutMs ?? 2000, commandTimeoutMs: 5000, buildTimeoutMs: 5000 });
  const fakes = { h1: new FakeBackend('h1', 100), h2: new FakeBackend('h2', 200) };
  fakes.h1.addParent(7, { vcpus: 1, memoryMiB: 512 });
  fakes.h2.addParent(9, { vcpus: 1, memoryMiB: 512 });
  const connect = async (host: 'h1' | 'h2') => {
    const runner = new HostCommandRunner(fakes[host]);
    await runner.recover();
    const link = new LocalLink(host, runner);
    const { destroy } = master.hostUp(link, { vcpus: 4, memoryMiB: 8192, clones: [...runner.clones.values()] });
    await runner.destroy(destroy);
    return { link, destroy };
  };
  const links = { h1: (await connect('h1')).link, h2: (await connect('h2')).link };
  return {
    master, cluster, fakes, links, parent: { host: 'h1', domid: 7 },
    drop: (host) => {
      links[host].down();
      master.hostDown(host, links[host]);
    },
    reconnect: async (host) => {
      const c = await connect(host);
      links[host] = c.link;
      return c.destroy;
    },
    children: () => (['h1', 'h2'] as const).flatMap((host) => fakes[host].clones().map((d) => ({ host, domid: d.domid, vmid: d.vmid! }))),
  };
}

/** The size every test parent has. */
export const SIZE = { vcpus: 1, memoryMiB: 512 };
