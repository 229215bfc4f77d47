/**
 * One distribution run on a lab (netlab.ts): a server and N clients, each a
 * separate cli-worker process in its own namespace, started together, with
 * what each reports. Shared by the host tests and the benchmark.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Lab, LabHost } from './netlab.js';
import { createSession, encodeSession } from './session.js';
import { patternBlock } from './source.js';
import type { TransportChoice } from './transport.js';
import type { ClientStats, ServerStats } from './types.js';
import { WORKER_SCRIPT, WorkerProcess } from './worker-process.js';

export interface ClientResult {
  wanted: number;
  mismatches: number;
  /** Blocks handed over through onBatch. */
  batchedBlocks: number;
  /** SHA-256 of the wanted blocks in index order. */
  digest: string;
  stats: ClientStats;
}

export interface ScenarioResult {
  /** The session descriptor the server published. */
  session: string;
  server: ServerStats;
  clients: ClientResult[];
  /** From "go" to the last client's report, for the clients started together. */
  ms: number;
  expectedDigest: string;
}

export interface Scenario {
  lab: Lab;
  clients: number;
  blocks: number;
  blockSize?: number;
  /** PatternSource seed: what the blocks contain. */
  seed?: number;
  testDropRate?: number;
  /** Transport choice for the server and the clients (default 'auto' for both). */
  transport?: TransportChoice;
  clientTransport?: TransportChoice;
  /** Fetches each client keeps in flight. */
  concurrency?: number;
  /** Clients started after the others have finished. */
  lateClients?: number;
  /** Host index of the server (default 0); clients take the other hosts in order. */
  serverHost?: number;
  /** Override the derived group and port (to make two sessions collide). */
  group?: string;
  groupPort?: number;
}

/** SHA-256 over every block in index order: what a client that got it all right reports. */
export function expectedDigest(seed: number, blocks: number, blockSize = 4096): string {
  const h = createHash('sha256');
  for (let i = 0; i < blocks; i++) h.update(patternBlock(seed, i, blockSize));
  return h.digest('hex');
}

export class Scenarios {
  private readonly workers = new Set<WorkerProcess>();

  /** @param script the compiled cli-worker.js to run. */
  constructor(private readonly script = WORKER_SCRIPT) {}

  spawn(host: LabHost, args: string[]): WorkerProcess {
    const w = new WorkerProcess(host.ns, args, this.script);
    this.workers.add(w);
    w.child.once('close', () => this.workers.delete(w));
    return w;
  }

  async startServer(sc: Scenario): Promise<{ server: WorkerProcess; session: string }> {
    const host = sc.lab.hosts[sc.serverHost ?? 0]!;
    const draft = createSession({
      blockCount: sc.blocks, blockSize: sc.blockSize, serverAddress: host.address, group: sc.group, groupPort: sc.groupPort,
    });
    const server = this.spawn(host, [
      'serve', '--session', encodeSession(draft), '--seed', String(sc.seed ?? 1),
      '--transport', sc.transport ?? 'auto', '--test-drop-rate', String(sc.testDropRate ?? 0),
    ]);
    const ready = await server.waitFor('ready');
    return { server, session: ready.session as string };
  }

  startClients(sc: Scenario, session: string, hosts: LabHost[], firstOrderSeed: number): WorkerProcess[] {
    return hosts.map((h, i) => this.spawn(h, [
      'fetch', '--session', session, '--seed', String(sc.seed ?? 1), '--order-seed', String(firstOrderSeed + i),
      '--interface', h.address, '--transport', sc.clientTransport ?? sc.transport ?? 'auto',
      '--test-drop-rate', String(sc.testDropRate ?? 0), '--concurrency', String(sc.concurrency ?? 16),
    ]));
  }

  /** Start the clients together ("go" once all are ready) and collect their reports. */
  async runClients(clients: WorkerProcess[]): Promise<{ results: ClientResult[]; ms: number }> {
    await Promise.all(clients.map((c) => c.waitFor('ready')));
    const go = performance.now();
    for (const c of clients) c.send('go');
    const done = await Promise.all(clients.map((c) => c.waitFor('done', 600_000)));
    return { results: done as unknown as ClientResult[], ms: performance.now() - go };
  }

  /** One server, `clients` clients started together, then `lateClients` more. */
  async run(sc: Scenario): Promise<ScenarioResult> {
    const serverHost = sc.serverHost ?? 0;
    const late = sc.lateClients ?? 0;
    const hosts = sc.lab.hosts.filter((_, i) => i !== serverHost).slice(0, sc.clients + late);
    if (hosts.length < sc.clients + late) throw new Error(`lab has too few hosts for ${sc.clients + late} clients`);
    const { server, session } = await this.startServer(sc);
    try {
      const first = await this.runClients(this.startClients(sc, session, hosts.slice(0, sc.clients), 1));
      const results = first.results;
      if (late > 0) {
        results.push(...(await this.runClients(this.startClients(sc, session, hosts.slice(sc.clients), 1000))).results);
      }
      await server.stop();
      const stats = server.events.find((e) => e.event === 'stats');
      if (!stats) throw new Error(`server reported no stats\n${server.stderr}`);
      return {
        session,
        server: stats.stats as ServerStats,
        clients: results,
        ms: first.ms,
        expectedDigest: expectedDigest(sc.seed ?? 1, sc.blocks, sc.blockSize),
      };
    } finally {
      server.kill();
    }
  }

  /** Kill whatever is still running (after a failure). */
  killAll(): void {
    for (const w of this.workers) w.kill();
    this.workers.clear();
  }
}
