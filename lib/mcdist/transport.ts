/**
 * Choosing between multicast and the TCP fallback, for the server and for
 * each client, and saying which was chosen and why.
 *
 * The server always listens on TCP as well, so a client that cannot use the
 * group (no membership, or the network silently drops it) falls back on its
 * own without the other clones noticing.
 */
import { McdistClient, type McdistClientOptions } from './client.js';
import { probeMulticast } from './probe.js';
import { McdistServer, type McdistServerOptions } from './server.js';
import type { Session } from './session.js';
import type { BlockSource } from './source.js';
import { TcpBlockClient, TcpBlockServer } from './tcp-fallback.js';
import type { BlockClient, ClientStats, Log, ServerStats } from './types.js';

export type TransportChoice = 'auto' | 'multicast' | 'tcp';

const defaultLog: Log = (m) => console.error(m);

export interface ServerOptions extends McdistServerOptions {
  /** 'auto' probes multicast on the server address and falls back to TCP only. */
  transport?: TransportChoice;
}

export interface DistributionServer {
  /** The session with its bound ports and chosen transport: hand this to clones. */
  readonly session: Session;
  readonly multicast: McdistServer | null;
  readonly tcp: TcpBlockServer;
  /** Multicast and TCP counters, summed. */
  stats(): ServerStats;
  close(): Promise<void>;
}

export async function startServer(
  session: Session,
  source: BlockSource,
  opts: ServerOptions = {},
): Promise<DistributionServer> {
  const log = opts.log ?? defaultLog;
  const choice = opts.transport ?? 'auto';
  let useMulticast = choice === 'multicast' || (choice === 'auto' && session.transport === 'multicast');
  if (useMulticast && choice === 'auto') {
    const probe = await probeMulticast({ interfaceAddress: session.serverAddress });
    if (!probe.available) {
      log(`mcdist: session ${session.id}: multicast unavailable (${probe.reason}); serving over unicast TCP`);
      useMulticast = false;
    }
  }
  const multicast = useMulticast ? await McdistServer.start(session, source, { ...opts, log }) : null;
  const withUdp = multicast ? multicast.session : session;
  const tcp = await TcpBlockServer.start(withUdp, source, { log });
  const bound: Session = { ...tcp.session, transport: multicast ? 'multicast' : 'tcp' };
  log(multicast
    ? `mcdist: session ${session.id}: serving ${session.blockCount} blocks of ${session.blockSize} B to ${session.group}:${session.groupPort}, requests on ${session.serverAddress}:${bound.requestPort}, TCP fallback on port ${bound.tcpPort}`
    : `mcdist: session ${session.id}: serving ${session.blockCount} blocks of ${session.blockSize} B over unicast TCP on ${session.serverAddress}:${bound.tcpPort}`);
  return {
    session: bound,
    multicast,
    tcp,
    stats: () => sumServerStats(multicast?.stats(), tcp.stats()),
    close: async () => {
      await Promise.all([multicast?.close(), tcp.close()]);
    },
  };
}

function sumServerStats(m: ServerStats | undefined, t: ServerStats): ServerStats {
  if (!m) return t;
  const drops = { ...m.drops };
  for (const [k, v] of Object.entries(t.drops)) drops[k as keyof typeof drops] += v;
  return {
    ...m,
    requestsReceived: m.requestsReceived + t.requestsReceived,
    blocksSent: m.blocksSent + t.blocksSent,
    bytesSent: m.bytesSent + t.bytesSent,
    drops,
  };
}

export interface ClientOptions extends McdistClientOptions {
  transport?: TransportChoice;
  /**
   * With 'auto': if multicast delivered nothing at all this long after the
   * first request, assume the network drops the group and switch to TCP.
   */
  silenceMs?: number;
}

export async function openClient(session: Session, opts: ClientOptions = {}): Promise<BlockClient> {
  const log = opts.log ?? defaultLog;
  const choice = opts.transport ?? 'auto';
  const tcp = (): Promise<BlockClient> => TcpBlockClient.open(session, { ...opts, log });
  if (choice === 'tcp' || (choice === 'auto' && session.transport === 'tcp')) {
    log(`mcdist: session ${session.id}: client using unicast TCP (${choice === 'tcp' ? 'asked for' : 'server chose it'})`);
    return tcp();
  }
  let mc: McdistClient;
  try {
    mc = await McdistClient.open(session, { ...opts, log });
  } catch (err) {
    if (choice === 'multicast') throw err;
    log(`mcdist: session ${session.id}: cannot join ${session.group} (${(err as Error).message}); client using unicast TCP`);
    return tcp();
  }
  log(`mcdist: session ${session.id}: client using multicast ${session.group}:${session.groupPort}`);
  return choice === 'auto' ? new SilenceFallbackClient(session, mc, tcp, opts.silenceMs ?? 2000, log) : mc;
}

/**
 * A multicast client that switches to TCP if the group never delivers
 * anything. Only total silence triggers it: once one block has arrived,
 * multicast works and losses are the retransmit timer's business.
 */
class SilenceFallbackClient implements BlockClient {
  private current: BlockClient;
  private switching: Promise<BlockClient> | null = null;
  private firstFetchAt: number | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly session: Session,
    private readonly mc: McdistClient,
    private readonly openTcp: () => Promise<BlockClient>,
    private readonly silenceMs: number,
    private readonly log: Log,
  ) {
    this.current = mc;
    this.timer = setInterval(() => this.check(), Math.max(10, silenceMs / 4)).unref();
  }

  get transport(): BlockClient['transport'] {
    return this.current.transport;
  }

  fetch(index: number): Promise<Buffer> {
    this.firstFetchAt ??= Date.now();
    const client = this.current;
    return client.fetch(index).catch((err: unknown) => {
      // Fetches cut short by the switch are retried on the TCP client.
      if (this.switching && client === this.mc) return this.switching.then((t) => t.fetch(index));
      throw err;
    });
  }

  has(index: number): boolean {
    return this.current.has(index);
  }

  stats(): ClientStats {
    return this.current.stats();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.mc.close();
    if (this.current !== this.mc) await this.current.close();
  }

  private check(): void {
    if (this.switching || this.firstFetchAt === null) return;
    const s = this.mc.stats();
    if (s.blocksReceived > 0) {
      clearInterval(this.timer); // multicast works; stop watching
      return;
    }
    if (Date.now() - this.firstFetchAt < this.silenceMs) return;
    clearInterval(this.timer);
    this.log(`mcdist: session ${this.session.id}: nothing received from ${this.session.group} in ${this.silenceMs} ms; switching to unicast TCP`);
    this.switching = this.openTcp().then((t) => {
      this.current = t;
      return t;
    });
    // Waiters on the multicast client are rejected and retried on TCP by fetch().
    this.switching.then(() => this.mc.close(), (err: Error) => this.log(`mcdist: TCP fallback failed: ${err.message}`));
  }
}
