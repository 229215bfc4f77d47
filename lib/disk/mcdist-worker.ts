/**
 * One side of "mcdist for blocks" (mcdist-backing.ts) as a process of its own, so that it can run
 * in a host's network namespace (the host tests) or beside a host's daemons.
 *
 *   node mcdist-worker.js serve --socket FAMILY_NBD_SOCKET --export slice/F/VM/DISK --address ADDR [--transport auto|multicast|tcp]
 *   node mcdist-worker.js back --descriptor JSON --socket LOCAL_NBD_SOCKET [--interface ADDR] [--transport ...]
 *
 * Protocol on stdio (lib/mcdist/worker-process.ts), one JSON object per line on stdout:
 * {"event":"ready", ...} once serving (serve: with the slice's `descriptor` for the clones);
 * a line "stats TAG" on stdin prints {"event":"stats-TAG","stats":...}; stdin EOF or SIGTERM
 * prints {"event":"stats","stats":...}, closes and exits.
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

/** Answers "stats TAG" lines until stdin ends (or SIGTERM), then reports and closes. */
function serveStdin(stats: () => object, close: () => Promise<void>): void {
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    emit({ event: 'stats', stats: stats() });
    await close();
    process.exit(0);
  };
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const m = /^stats (\S+)$/.exec(line.trim());
    if (m) emit({ event: `stats-${m[1]}`, stats: stats() });
  });
  rl.on('close', () => void stop());
  process.on('SIGTERM', () => void stop());
}

async function main(): Promise<void> {
  const { positionals, values: a } = parseArgs({
    allowPositionals: true,
    options: {
      socket: { type: 'string' }, export: { type: 'string' }, address: { type: 'string' }, descriptor: { type: 'string' },
      interface: { type: 'string' }, transport: { type: 'string' },
    },
  });
  if (!a.socket) throw new Error('--socket is required');
  if (positionals[0] === 'serve') {
    if (!a.export || !a.address) throw new Error('serve needs --export and --address');
    const s = await serveSlice({ nbd: { path: a.socket }, export: a.export, serverAddress: a.address, server: { transport: transport(a.transport), log } });
    emit({ event: 'ready', descriptor: s.descriptor });
    serveStdin(() => s.mcdist.stats(), () => s.close());
  } else if (positionals[0] === 'back') {
    if (!a.descriptor) throw new Error('back needs --descriptor');
    const b = await McdistBacking.open({
      descriptor: JSON.parse(a.descriptor) as SliceSession, socket: a.socket, log,
      client: { transport: transport(a.transport), interfaceAddress: a.interface, log },
    });
    emit({ event: 'ready', transport: b.client.transport });
    serveStdin(() => ({ ...b.stats(), refusals: b.nbd.refusals }), () => b.close());
  } else {
    throw new Error('usage: mcdist-worker serve|back ...');
  }
}

main().catch((err: Error) => {
  emit({ event: 'error', message: err.message });
  process.exit(1);
});
