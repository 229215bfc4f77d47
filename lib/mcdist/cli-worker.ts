/**
 * A separate process playing the server or one client of a session, for the
 * host tests and the benchmark (which run each one inside its own network
 * namespace). Blocks come from a PatternSource, so a client checks every byte
 * it gets without a copy of the source.
 *
 *   node cli-worker.js serve --session JSON --seed N [--transport auto|multicast|tcp] [--test-drop-rate P]
 *   node cli-worker.js fetch --session JSON --seed N [--order-seed N] [--fraction F] [--concurrency N]
 *                            [--interface ADDR] [--transport ...] [--test-drop-rate P]
 *   node cli-worker.js probe [--interface ADDR]
 *
 * Protocol on stdio, one JSON object per line on stdout:
 *   serve: prints {"event":"ready","session":...}; on stdin EOF or SIGTERM prints
 *          {"event":"stats",...} and exits.
 *   fetch: opens the client, prints {"event":"ready"}, waits for a line "go" on
 *          stdin (so a harness can start all clients together), fetches, prints
 *          {"event":"done",...} and exits 0, or {"event":"error",...} and exits 1.
 *   probe: prints {"event":"probe","result":{available,reason?}} (what `snowflock
 *          doctor` reports) for --interface, and exits.
 */
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { probeMulticast } from './probe.js';
import { decodeSession, encodeSession } from './session.js';
import { PatternSource, patternBlock } from './source.js';
import { type TransportChoice, openClient, startServer } from './transport.js';

function emit(obj: object): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

const log = (m: string): void => {
  process.stderr.write(`${m}\n`);
};

function transportArg(v: string | undefined): TransportChoice {
  if (v === undefined) return 'auto';
  if (v === 'auto' || v === 'multicast' || v === 'tcp') return v;
  throw new Error(`unknown transport ${v}`);
}

async function serve(args: Record<string, string | undefined>): Promise<void> {
  const draft = decodeSession(args.session!);
  const source = new PatternSource(draft.blockCount, draft.blockSize, Number(args.seed ?? 1));
  const server = await startServer(draft, source, {
    transport: transportArg(args.transport),
    testDropRate: args['test-drop-rate'] ? Number(args['test-drop-rate']) : undefined,
    log,
  });
  emit({ event: 'ready', session: encodeSession(server.session) });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    emit({ event: 'stats', stats: server.stats() });
    await server.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
}

/** Fisher-Yates with a seeded xorshift, so a client's order is reproducible. */
function shuffled(n: number, seed: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let x = (seed >>> 0) || 1;
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

async function fetchAll(args: Record<string, string | undefined>): Promise<void> {
  const session = decodeSession(args.session!);
  const seed = Number(args.seed ?? 1);
  const order = shuffled(session.blockCount, Number(args['order-seed'] ?? 1));
  const wanted = order.slice(0, Math.ceil(session.blockCount * Number(args.fraction ?? 1)));
  const concurrency = Number(args.concurrency ?? 16);
  let batchedBlocks = 0;
  const client = await openClient(session, {
    transport: transportArg(args.transport),
    interfaceAddress: args.interface,
    testDropRate: args['test-drop-rate'] ? Number(args['test-drop-rate']) : undefined,
    onBatch: (blocks) => { batchedBlocks += blocks.length; },
    log,
  });
  emit({ event: 'ready' });
  await waitForGo();
  const started = performance.now();
  let mismatches = 0;
  let next = 0;
  // `concurrency` fetches in flight, like that many vCPUs faulting at once.
  const worker = async (): Promise<void> => {
    while (next < wanted.length) {
      const index = wanted[next++]!;
      const got = await client.fetch(index);
      if (!got.equals(patternBlock(seed, index, session.blockSize))) mismatches++;
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } catch (err) {
    emit({ event: 'error', message: (err as Error).message, stats: client.stats() });
    await client.close();
    process.exit(1);
  }
  const ms = performance.now() - started;
  // A digest over the wanted blocks in index order, for the harness to compare.
  const digest = createHash('sha256');
  for (const index of [...wanted].sort((a, b) => a - b)) digest.update(await client.fetch(index));
  const stats = client.stats();
  await client.close();
  emit({
    event: 'done', wanted: wanted.length, mismatches, batchedBlocks, ms, digest: digest.digest('hex'), stats,
  });
  process.exit(0);
}

function waitForGo(): Promise<void> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (line.trim() === 'go') {
        resolve(); // before close(): close() emits 'close' synchronously
        rl.close();
      }
    });
    rl.on('close', () => reject(new Error('stdin closed before "go"')));
  });
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      session: { type: 'string' },
      seed: { type: 'string' },
      transport: { type: 'string' },
      'test-drop-rate': { type: 'string' },
      'order-seed': { type: 'string' },
      fraction: { type: 'string' },
      concurrency: { type: 'string' },
      interface: { type: 'string' },
    },
  });
  const args = values as Record<string, string | undefined>;
  if (positionals[0] === 'probe') {
    emit({ event: 'probe', result: await probeMulticast({ interfaceAddress: args.interface }) });
    return;
  }
  if (!values.session) throw new Error('--session is required');
  if (positionals[0] === 'serve') await serve(args);
  else if (positionals[0] === 'fetch') await fetchAll(args);
  else throw new Error(`usage: cli-worker serve|fetch --session JSON ... | probe`);
}

main().catch((err: Error) => {
  emit({ event: 'error', message: err.message });
  process.exit(1);
});
