/**
 * `snowflock daemon ...`: run the master or a host daemon, or make keys (keygen-command.ts). Events are
 * JSON lines on stderr. A host daemon forks real VMs with `--backend xen` (memory on demand,
 * xen-backend.ts); `--backend fake` is a dry run: forks are bookkeeping, no VM is touched.
 */
import type { Argv, CommandModule } from 'yargs';
import { InternalClusterManager } from '../cluster/internal.js';
import { SlurmClusterManager } from '../cluster/slurm/manager.js';
import { GridEngineClusterManager } from '../cluster/gridengine/manager.js';
import type { ClusterManager } from '../cluster/types.js';
import { FakeBackend } from './fake-backend.js';
import type { CloneBackend } from './backend.js';
import { TcpGuestTransport, type GuestTransport } from './guest-transport.js';
import { HostDaemon } from './host-daemon.js';
import type { Log } from './host-commands.js';
import { readKeyFile } from './key.js';
import { readHostCredential, type HostCredential } from './host-key.js';
import { keygenModule } from './keygen-command.js';
import { Master } from './master.js';
import { MasterServer } from './master-server.js';
import { VchanGuestTransport } from './vchan-transport.js';
import { serveAllDomains } from './domain-watch.js';
import { DEFAULT_ADMIN_SOCKET, askHostDaemon } from './admin-socket.js';
import { printJson, table } from '../cli/output.js';
import { parseBlockTransport } from '../clone/disk-transport.js';

export const DEFAULT_MASTER_PORT = 7311;

const jsonLog = (role: string): Log => (event, detail = {}) => {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), role, event, ...detail }) + '\n');
};

function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => void close().finally(resolve);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

function hostPort(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^(.+?)(?::(\d+))?$/.exec(text);
  const port = Number(m?.[2] ?? defaultPort);
  if (!m || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad address ${text}: use HOST[:PORT]`);
  return { host: m[1]!, port };
}

interface MasterArgs {
  'key-file': string; listen: string; cluster: string; 'slurm-conf'?: string; partition?: string; queue?: string;
  'ticket-ttl': number; 'destroy-timeout': number; 'build-timeout': number;
}

interface HostArgs {
  name?: string; 'key-file': string; master: string; vcpus: number; 'memory-mib': number; backend: string;
  advertise?: string; 'state-dir'?: string; 'isolate-families': boolean; 'disk-transport'?: string;
  guests: string; 'guest-listen': string; 'trust-claimed-domid': boolean; 'guest-address': string[]; 'vchan-domid': number[]; 'vchan-all-guests': boolean; 'admin-socket': string;
}

const masterModule: CommandModule<object, MasterArgs> = {
  command: 'master',
  describe: 'Run the master daemon: tickets and fork families across hosts',
  builder: (a) => a
    .option('key-file', { type: 'string', demandOption: true, describe: 'the cluster key (64 hex digits, mode 600; snowflock daemon keygen): every host\'s key derives from it' })
    .option('listen', { type: 'string', default: `0.0.0.0:${DEFAULT_MASTER_PORT}`, describe: 'address for host daemons' })
    .option('cluster', { choices: ['internal', 'slurm', 'gridengine'], default: 'internal', describe: 'cluster manager' })
    .option('slurm-conf', { type: 'string', describe: 'SLURM_CONF for --cluster slurm' })
    .option('partition', { type: 'string', describe: 'Slurm partition' })
    .option('queue', { type: 'string', describe: 'Grid Engine queue for the holder jobs (default: any)' })
    .option('ticket-ttl', { type: 'number', default: 600, describe: 'seconds an unused ticket lives' })
    .option('destroy-timeout', { type: 'number', default: 15, describe: 'seconds join/kill wait for one host to confirm' })
    .option('build-timeout', { type: 'number', default: 600, describe: 'seconds one host may take to build its clones' }),
  handler: async (argv) => {
    const key = readKeyFile(argv['key-file']);
    const policy = { ticketTtlMs: argv['ticket-ttl'] * 1000 };
    const cluster: ClusterManager = argv.cluster === 'slurm'
      ? new SlurmClusterManager({ ...policy, slurmConf: argv['slurm-conf'], partition: argv.partition })
      : argv.cluster === 'gridengine'
        ? new GridEngineClusterManager({ ...policy, queue: argv.queue })
        : new InternalClusterManager(policy);
    const log = jsonLog('master');
    const master = new Master({ cluster, destroyTimeoutMs: argv['destroy-timeout'] * 1000, buildTimeoutMs: argv['build-timeout'] * 1000, log });
    const { host, port } = hostPort(argv.listen, DEFAULT_MASTER_PORT);
    const server = new MasterServer({ master, key, host, port, log });
    log('listening', await server.listen());
    await untilSignal(async () => {
      await server.close();
      await cluster.close();
    });
  },
};

const hostModule: CommandModule<object, HostArgs> = {
  command: 'host',
  describe: 'Run a host (dom0) daemon: serves guests, builds clones',
  builder: (a) => a
    .option('name', { type: 'string', describe: 'this host\'s name in the cluster: the one in its host key file (may be left out then), needed with the cluster key' })
    .option('key-file', { type: 'string', demandOption: true, describe: 'this host\'s key file, mode 600: "snowflock-host-key v1 NAME HEX" (snowflock daemon keygen --host NAME), which proves NAME and no other; or the cluster key (64 hex digits), which could prove any name' })
    .option('master', { type: 'string', demandOption: true, describe: `master address HOST[:PORT] (default port ${DEFAULT_MASTER_PORT})` })
    .option('vcpus', { type: 'number', demandOption: true, describe: 'vCPUs clones may use here' })
    .option('memory-mib', { type: 'number', demandOption: true, describe: 'MiB clones may use here' })
    .option('backend', { choices: ['xen', 'fake'], demandOption: true, describe: 'xen: fork real VMs, memory on demand; fake: bookkeeping only (a dry run)' })
    .option('advertise', { type: 'string', describe: 'xen: the address other hosts reach this host\'s memservers at' })
    .option('state-dir', { type: 'string', describe: 'xen: where fork images live (default $SNOWFLOCK_STATE or /var/lib/snowflock)' })
    .option('disk-transport', { choices: ['front', 'mcdist'], default: 'front', describe: 'xen: how clones read the disk slices of forks captured here: front (TLS, one stream per clone host) or mcdist (sealed multicast; a disk whose multicast does not work reads the front)' })
    .option('isolate-families', { type: 'boolean', default: false, describe: 'xen: each family\'s clones talk only to their family (an nftables bridge table per family; needs nft)' })
    .option('guests', { choices: ['vchan', 'tcp'], default: 'vchan', describe: 'how guests reach this daemon' })
    .option('guest-listen', { type: 'string', default: '127.0.0.1:7312', describe: 'TCP address for guests (--guests tcp)' })
    .option('trust-claimed-domid', { type: 'boolean', default: false, describe: 'TCP: believe the domid a guest claims (tests only)' })
    .option('guest-address', { type: 'string', array: true, default: [], describe: 'TCP: IP=DOMID, which address is which guest' })
    .option('vchan-domid', { type: 'number', array: true, default: [], describe: 'vchan: guest domains to serve from the start' })
    .option('vchan-all-guests', { type: 'boolean', default: false, describe: 'vchan (backend xen): serve every domain of this host, as they come and go' })
    .option('admin-socket', { type: 'string', default: DEFAULT_ADMIN_SOCKET, describe: 'Unix socket (mode 600) for `snowflock daemon status`, `hosts`, `families`; "" for none' }),
  handler: async (argv) => {
    if (argv.backend === 'xen' && !argv.advertise) throw new Error('--backend xen needs --advertise ADDRESS: where clones on other hosts reach this host\'s memservers');
    if (argv.backend === 'xen' && argv.guests === 'tcp') {
      throw new Error('--guests tcp cannot serve --backend xen: a clone\'s vifs stay off the bridge until it reports network_ready, which a guest on TCP could only send over that network, so its sf_clone would never finish; use --guests vchan');
    }
    guestAddresses(argv['guest-address']); // refused before anything starts
    const credential = readHostCredential(argv['key-file'], argv.name);
    const log = jsonLog(`host ${credential.host}`);
    if (credential.from === 'cluster') {
      log('cluster-key-on-host', { warning: 'this host holds the cluster key, which speaks for any host; give it its own: snowflock daemon keygen --host NAME' });
    }
    const { backend, close, listDomids } = await cloneBackend(argv, credential);
    const guests = guestTransport(argv, log);
    if (argv['vchan-all-guests']) {
      if (argv.guests !== 'vchan' || !listDomids) throw new Error('--vchan-all-guests needs --guests vchan and --backend xen');
      serveAllDomains(listDomids, guests);
    }
    const daemon = new HostDaemon({
      host: credential.host, hostKey: credential.key, master: hostPort(argv.master, DEFAULT_MASTER_PORT), backend,
      guests, capacity: { vcpus: argv.vcpus, memoryMiB: argv['memory-mib'] }, log,
      ...(argv['admin-socket'] ? { adminSocket: argv['admin-socket'] } : {}),
    });
    await daemon.start();
    log('started', { guests: argv.guests, backend: argv.backend });
    await untilSignal(async () => {
      await daemon.close();
      close();
    });
  },
};

async function cloneBackend(argv: HostArgs, credential: HostCredential): Promise<{ backend: CloneBackend; close: () => void; listDomids?: () => number[] }> {
  if (argv.backend === 'fake') return { backend: new FakeBackend(credential.host), close: () => {} };
  // Loaded only here: the fake backend runs where there is no Xen.
  const [{ XenBackend }, { openXen }, { loadAddon }] = await Promise.all([import('./xen-backend.js'), import('../xen/control.js'), import('../xen/native.js')]);
  const xc = openXen();
  const xs = new (loadAddon().XenStore)();
  const backend = new XenBackend(xc, xs, { advertiseHost: argv.advertise!, stateDir: argv['state-dir'], hostKey: credential.key, isolateFamilies: argv['isolate-families'], diskTransport: parseBlockTransport(argv['disk-transport'] ?? 'front') });
  return { backend, close: () => (xs.close(), xc.close()), listDomids: () => xc.listDomains().map((d) => d.domid) };
}

function guestAddresses(pairs: string[]): Map<string, number> {
  return new Map(pairs.map((pair) => {
    const [ip, d] = pair.split('=');
    // "IP=" must not become domid 0: that would let the guest at IP speak as dom0.
    if (!ip || !/^[1-9]\d*$/.test(d ?? '')) throw new Error(`bad --guest-address ${pair}: use IP=DOMID with a guest's domid (1 or more)`);
    return [ip, Number(d)] as const;
  }));
}

function guestTransport(argv: HostArgs, log: Log): GuestTransport {
  if (argv.guests === 'vchan') {
    const t = new VchanGuestTransport({ log });
    for (const d of argv['vchan-domid']) t.admit(d);
    return t;
  }
  const { host, port } = hostPort(argv['guest-listen'], 7312);
  const map = guestAddresses(argv['guest-address']);
  return new TcpGuestTransport({ host, port, identify: argv['trust-claimed-domid'] ? 'claimed' : (ip) => map.get(ip.replace(/^::ffff:/, '')) });
}

const statusModule: CommandModule<object, { socket: string; json: boolean }> = {
  command: 'status',
  describe: 'Ask this host\'s daemon how it is: its link to the master and the clones it holds',
  builder: (a) => a.option('socket', { type: 'string', default: DEFAULT_ADMIN_SOCKET, describe: 'the host daemon\'s admin socket' }) as never,
  handler: async (argv) => {
    const s = await askHostDaemon(argv.socket, 'status');
    if (argv.json) return printJson(s);
    console.log(`host ${s.host}: master ${s.master.address} ${s.master.connected ? 'connected' : 'NOT connected'}, up since ${new Date(s.startedAt).toISOString()}`);
    console.log(s.clones.length ? table(['DOMID', 'TICKET', 'VMID'], s.clones.map((c) => [c.domid, c.fork, c.vmid])) : 'no clones on this host');
  },
};

export function daemonCommand(y: Argv): Argv {
  return y.command('daemon', 'Run the sf_* daemons (master, host), make their keys (keygen), or ask the local host daemon (status)', (d) =>
    d.command(masterModule).command(hostModule).command(keygenModule).command(statusModule)
      .demandCommand(1, 'say which: master, host, keygen or status'));
}
