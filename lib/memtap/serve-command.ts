// `snowflock memserver`: one fork's memserver as a process. The first stdout line is always
// the JSON "listening" event, so whoever spawned it (lib/memtap/spawn.ts) learns the port;
// the process exits 0 once every clone said BYE, or on SIGTERM/SIGINT after a clean close.
// Frames are sealed unless insecurePlaintext or SNOWFLOCK_MEMSERVER_INSECURE_PLAINTEXT=1 (a
// trusted network where the cost of sealing matters): the handshake still proves the key.
import { readFileSync, rmSync } from 'node:fs';
import { relative, isAbsolute, resolve } from 'node:path';
import { decodeDescriptor } from '../descriptor/format.js';
import { MemServer } from './server.js';
import { readTokenFile } from './token.js';
import type { MemServerProcessOptions } from './fork-process.js';

export interface RunMemServerOptions extends MemServerProcessOptions {
  json?: boolean;
  eagerPagesPerCpu?: number;
  /** where lines go (default: process stdout/stderr) */
  stdout?: (line: string) => void;
  stderr?: (line: string) => void;
  /** handle SIGTERM/SIGINT (default true) */
  signals?: boolean;
}

const inside = (dir: string, file: string) => {
  const r = relative(resolve(dir), resolve(file));
  return r !== '' && !r.startsWith('..') && !isAbsolute(r);
};

function human(event: Record<string, unknown>): string {
  const { event: name, ...rest } = event;
  return `memserver: ${String(name)} ${Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ')}`.trimEnd();
}

/** Returns the exit code; never throws. */
export async function runMemServer(o: RunMemServerOptions): Promise<number> {
  const out = o.stdout ?? ((l: string) => process.stdout.write(l + '\n'));
  const err = o.stderr ?? ((l: string) => process.stderr.write(l + '\n'));
  const log = (event: Record<string, unknown>) => (o.json ? out(JSON.stringify({ time: new Date().toISOString(), ...event })) : err(human(event)));
  let server: MemServer | undefined;
  try {
    if (!Number.isInteger(o.clones) || o.clones < 1) throw new Error(`--clones must be a positive integer, got ${o.clones}`);
    const port = o.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0..65535, got ${o.port}`);
    if (o.removeOnExit && !inside(o.removeOnExit, o.image) && !inside(o.removeOnExit, o.descriptor)) {
      throw new Error(`--remove-on-exit ${o.removeOnExit} holds neither the image nor the descriptor; refusing to remove it`);
    }
    let bytes: Buffer;
    try {
      bytes = readFileSync(o.descriptor);
    } catch (e) {
      throw new Error(`cannot read descriptor ${o.descriptor}: ${(e as Error).message}`);
    }
    const descriptor = decodeDescriptor(bytes, o.descriptor);
    const token = readTokenFile(o.tokenFile);
    const insecurePlaintext = o.insecurePlaintext ?? process.env.SNOWFLOCK_MEMSERVER_INSECURE_PLAINTEXT === '1';
    server = new MemServer({
      descriptor, imagePath: o.image, token, host: o.host ?? '127.0.0.1', port, clones: o.clones, eagerPagesPerCpu: o.eagerPagesPerCpu, log, insecurePlaintext,
    });
    const addr = await server.listen();
    const p = server.plan;
    out(JSON.stringify({
      event: 'listening', host: addr.host, port: addr.port, pages: p.pages, evictPages: p.evictPages, zeroPages: p.zeroPages, eagerPages: p.eagerPages,
      sealed: !insecurePlaintext,
    }));
  } catch (e) {
    await server?.close();
    const message = (e as Error).message;
    if (o.json) out(JSON.stringify({ event: 'error', message }));
    else err(`snowflock memserver: error: ${message}`);
    return 1;
  }

  let stop!: (why: string) => void;
  const stopped = new Promise<string>((r) => (stop = r));
  const onSignal = (signal: NodeJS.Signals) => stop(signal);
  if (o.signals !== false) {
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }
  server.once('finished', () => stop('finished'));
  const why = await stopped;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  await server.close();
  const { connections: _open, ...totals } = server.stats();
  log({ event: 'exit', why, stats: totals });
  if (why === 'finished' && o.removeOnExit) rmSync(o.removeOnExit, { recursive: true, force: true });
  return 0;
}
