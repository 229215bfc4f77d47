/**
 * One side of "mcdist for blocks" (mcdist-backing.ts) as a process of its own, so that it can run
 * in a host's network namespace (the host tests) or beside a host's daemons.
 *
 *   node mcdist-worker.js serve --socket FAMILY_NBD_SOCKET --export slice/F/VM/DISK --address ADDR [--name NAME] [--transport auto|multicast|tcp] [--detached]
 *   node mcdist-worker.js back --descriptor JSON|- --socket LOCAL_NBD_SOCKET [--interface ADDR] [--transport ...] [--check-ms MS] [--detached]
 *
 * Protocol on stdio (lib/mcdist/worker-process.ts), one JSON object per line on stdout:
 * {"event":"ready", ...} once serving (serve: with the slice's `descriptor` for the clones);
 * a line "stats TAG" on stdin prints {"event":"stats-TAG","stats":...}; stdin EOF or SIGTERM
 * prints {"event":"stats","stats":...}, closes and exits.
 *
 * The fork path (slice-servers.ts, shared-backings.ts) runs it `--detached`: it outlives the
 * process that started it (`snowflock clone` exits, its clones run on), so only SIGTERM stops
 * it (SIGUSR1 writes its counters to its log, stderr), and stdout may be closed under it.
 * `--descriptor -` reads the descriptor (it holds the session key) as the first line of stdin,
 * never from the command line, which any local user can read. `--check-ms` makes `back` fetch block 0 before it says ready: a group that delivers
 * nothing in that time is an error, and the caller reads the front instead.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { TransportChoice } from '../mcdist/transport.js';
import { McdistBacking, serveSlice, type SliceSession } from './mcdist-backing.js';

const emit = (obj: object): void => {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
};
const log = (m: string): void => {
  process.stderr.write(`${m}\n`);
};

function transport(v: string | undefined): TransportChoice {
  if (v === undefined || v === 'auto' || v === 'multicast' || v === 'tcp') return v ?? 'auto';
  throw new Error(`unknown transport ${v}`);
}

/** Answers "stats TAG" lines until stdin ends (or SIGTERM), then reports and closes; detached: SIGTERM only. */
function serveStdin(stats: () => object, close: () => Promise<void>, detached = false): void {
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    emit({ event: 'stats', stats: stats() });
    await close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  // a detached worker has no one reading its stdout: SIGUSR1 writes its counters to its log
  process.on('SIGUSR1', () => log(`stats ${JSON.stringify(stats())}`));
  if (detached) return;
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const m = /^stats (\S+)$/.exec(line.trim());
    if (m) emit({ event: `stats-${m[1]}`, stats: stats() });
  });
  rl.on('close', () => void stop());
}

/** The first line of stdin (the descriptor, kept off the command line). */
async function firstLine(): Promise<string> {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    rl.close();
    return line;
  }
  throw new Error('stdin ended before the descriptor');
}

/** Fetches block 0 within `ms`: a session whose group delivers nothing is refused by name. */
async function checkDelivery(b: McdistBacking, ms: number): Promise<void> {
  if (b.descriptor.sizeBytes === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no block of ${b.descriptor.name} arrived within ${ms} ms over ${b.client.transport}`)), ms);
  });
  try {
    await Promise.race([b.read(0, 1), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<void> {
  const { positionals, values: a } = parseArgs({
    allowPositionals: true,
    options: {
      socket: { type: 'string' }, export: { type: 'string' }, address: { type: 'string' }, descriptor: { type: 'string' },
      interface: { type: 'string' }, transport: { type: 'string' }, name: { type: 'string' }, 'check-ms': { type: 'string' },
      detached: { type: 'boolean' },
    },
  });
  const detached = a.detached ?? false;
  // a detached worker's starter may be gone: a write to its closed stdout is not fatal
  if (detached) process.stdout.on('error', () => undefined);
  if (!a.socket) throw new Error('--socket is required');
  if (positionals[0] === 'serve') {
    if (!a.export || !a.address) throw new Error('serve needs --export and --address');
    const s = await serveSlice({ nbd: { path: a.socket }, export: a.export, name: a.name, serverAddress: a.address, server: { transport: transport(a.transport), log } });
    emit({ event: 'ready', descriptor: s.descriptor });
    serveStdin(() => s.mcdist.stats(), () => s.close(), detached);
  } else if (positionals[0] === 'back') {
    if (!a.descriptor) throw new Error('back needs --descriptor');
    const descriptor = JSON.parse(a.descriptor === '-' ? await firstLine() : a.descriptor) as SliceSession;
    const b = await McdistBacking.open({
      descriptor, socket: a.socket, log,
      client: { transport: transport(a.transport), interfaceAddress: a.interface, log },
    });
    if (a['check-ms'] !== undefined) {
      await checkDelivery(b, Number(a['check-ms'])).catch(async (e: Error) => {
        await b.close();
        throw e;
      });
    }
    emit({ event: 'ready', transport: b.client.transport });
    serveStdin(() => ({ ...b.stats(), refusals: b.nbd.refusals }), () => b.close(), detached);
  } else {
    throw new Error('usage: mcdist-worker serve|back ...');
  }
}

main().catch((err: Error) => {
  emit({ event: 'error', message: err.message });
  process.exit(1);
});
