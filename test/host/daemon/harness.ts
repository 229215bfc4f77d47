// A master and two host daemons (h1, h2) on real loopback TCP, fake backends, the internal
// cluster manager; guests are SfClients over the TCP channel claiming their domid. When a fake
// clone starts, its "program" runs: it completes the sf_clone it was born in (learning its vmid),
// then does whatever the test says.
import { randomBytes } from 'node:crypto';
import { InternalClusterManager } from '../../../lib/cluster/index.js';
import { SfClient, connectTcp, type GuestChannel } from '../../../lib/api/index.js';
import { FakeBackend, type FakeDomain } from '../../../lib/daemon/fake-backend.js';
import { TcpGuestTransport } from '../../../lib/daemon/guest-transport.js';
import { HostDaemon } from '../../../lib/daemon/host-daemon.js';
import { deriveHostKey } from '../../../lib/daemon/host-key.js';
import { Master } from '../../../lib/daemon/master.js';
import { MasterServer } from '../../../lib/daemon/master-server.js';

export type HostName = 'h1' | 'h2';

export interface ChildContext {
  vmid: number;
  host: HostName;
  domid: number;
  client: SfClient;
}

interface HostSlot {
  daemon: HostDaemon;
  fake: FakeBackend;
  port: number;
}

export interface Lab {
  key: Buffer;
  master: Master;
  masterPort: number;
  hosts: Record<HostName, HostSlot>;
  /** What every started clone does after it learned its vmid. Default: exit at once. */
  childProgram: (c: ChildContext) => Promise<void>;
  /** Settles when the programs of all clones started so far have finished (rejects with the first failure). */
  children(): Promise<ChildContext[]>;
  /** A guest of a host; `channels` records every channel it opened (to break them in tests). */
  guest(host: HostName, domid: number, channels?: GuestChannel[]): SfClient;
  /** A fresh daemon for the host: same fake domains, same guest port; waits until it registered. */
  restart(host: HostName): Promise<void>;
  close(): Promise<void>;
}

export interface LabOptions {
  ticketTtlMs?: number;
  key?: Buffer;
  /** h1's daemon serves dom0's CLI there. */
  adminSocket?: string;
  /** A host reaches the master through the port this returns (a relay) rather than directly. */
  via?: Partial<Record<HostName, (masterPort: number) => Promise<number>>>;
  /** Every log event of the master's server ('master') and the host daemons. */
  log?: (who: 'master' | HostName, event: string, detail?: Record<string, unknown>) => void;
}

export async function startLab(o: LabOptions = {}): Promise<Lab> {
  const key = o.key ?? randomBytes(32);
  const cluster = new InternalClusterManager({ ticketTtlMs: o.ticketTtlMs ?? 60_000 });
  const master = new Master({ cluster, destroyTimeoutMs: 5000, commandTimeoutMs: 10_000, buildTimeoutMs: 10_000 });
  const server = new MasterServer({ master, key, heartbeatMs: 2000, ...(o.log ? { log: (e, d) => o.log!('master', e, d) } : {}) });
  const { port: masterPort } = await server.listen();
  const clients: SfClient[] = [];
  const programs: Promise<ChildContext>[] = [];

  const lab: Lab = {
    key, master, masterPort, hosts: {} as Record<HostName, HostSlot>,
    childProgram: async (c) => c.client.exit(),
    children: () => Promise.all(programs),
    guest: (host, domid, channels) => {
      const client = new SfClient(async () => {
        const ch = await connectTcp({ host: '127.0.0.1', port: lab.hosts[host].port, domid });
        channels?.push(ch);
        return ch;
      }, { retryForMs: 20_000, retryDelayMs: 50 });
      clients.push(client);
      return client;
    },
    restart: async (host) => {
      const old = lab.hosts[host];
      await old.daemon.close();
      lab.hosts[host] = await startHost(host, old.fake, old.port);
    },
    close: async () => {
      for (const c of clients) c.close();
      await Promise.all(Object.values(lab.hosts).map((h) => h.daemon.close()));
      await server.close();
      await cluster.close();
    },
  };

  const runProgram = (host: HostName, d: FakeDomain): Promise<ChildContext> => (async () => {
    const client = lab.guest(host, d.domid);
    const vmid = await client.clone(d.fork!); // the clone wakes up inside the parent's sf_clone
    const ctx = { vmid, host, domid: d.domid, client };
    await lab.childProgram(ctx);
    return ctx;
  })();

  async function startHost(name: HostName, fake: FakeBackend, port = 0, via = false): Promise<HostSlot> {
    const relay = via ? o.via?.[name] : undefined;
    const toMaster = relay ? await relay(masterPort) : masterPort;
    fake.hooks.onStart = (clones) => { for (const d of clones) programs.push(runProgram(name, d)); };
    const guests = new TcpGuestTransport({ port, identify: 'claimed' });
    const daemon = new HostDaemon({
      host: name, hostKey: deriveHostKey(key, name), master: { host: '127.0.0.1', port: toMaster }, backend: fake, guests,
      ...(o.log ? { log: (e: string, d?: Record<string, unknown>) => o.log!(name, e, d) } : {}),
      capacity: { vcpus: 4, memoryMiB: 8192 }, reconnectMs: 50, cloneWatchMs: 100,
      ...(name === 'h1' && o.adminSocket ? { adminSocket: o.adminSocket } : {}),
    });
    await daemon.start();
    await daemon.whenRegistered();
    return { daemon, fake, port: guests.port };
  }

  const f1 = new FakeBackend('h1', 100);
  const f2 = new FakeBackend('h2', 200);
  f1.addParent(7, { vcpus: 1, memoryMiB: 512 });
  f2.addParent(9, { vcpus: 1, memoryMiB: 512 });
  lab.hosts.h1 = await startHost('h1', f1, 0, true);
  lab.hosts.h2 = await startHost('h2', f2, 0, true);
  return lab;
}

export function clonesLeft(lab: Lab): number {
  return lab.hosts.h1.fake.clones().length + lab.hosts.h2.fake.clones().length;
}
