// The processes a fork leaves running (memserver, memtap supervisor and worker) start on the
// fork's critical path. Started through fork-process-main.js they skip the CLI (yargs and every
// other command, about half of a CLI start): a role and one JSON object of options are the
// whole command line. `snowflock memserver` and `snowflock memtap` start the same code by hand.
import { fileURLToPath } from 'node:url';
import type { MemtapBackend } from '../xen/native.js';

export interface MemServerProcessOptions {
  descriptor: string;
  image: string;
  tokenFile: string;
  clones: number;
  /** the address to listen on: the cluster interface's, or 127.0.0.1 (the default) for local clones */
  host?: string;
  port?: number;
  /** frames unsealed after the handshake (trusted networks only; see MemServerOptions) */
  insecurePlaintext?: boolean;
  /** the fork's directory, removed by the memserver once every clone is finished */
  removeOnExit?: string;
}

export interface MemtapProcessOptions {
  domid: number;
  host: string;
  port: number;
  tokenFile: string;
  vmid: number;
  prefetch?: number;
  /** zero-fill the pages the clone reports free (default true) */
  heuristics?: boolean;
  /** hold neighbour prefetch until the clone's free-page report is applied, at most this long */
  freeReportWaitMs?: number;
  backend?: MemtapBackend;
  /** a worker only: replace the paging ring of a worker that ended with a fresh one */
  takeover?: boolean;
}

export type ForkProcess =
  | { role: 'memserver'; options: MemServerProcessOptions }
  | { role: 'memtap' | 'memtap-worker'; options: MemtapProcessOptions };

export function forkProcessArgv(p: ForkProcess): string[] {
  return [fileURLToPath(new URL('./fork-process-main.js', import.meta.url)), p.role, JSON.stringify(p.options)];
}

/** Parses the command line forkProcessArgv made; throws naming what is wrong. */
export function parseForkProcessArgv(argv: string[]): ForkProcess {
  const [role, json, ...rest] = argv;
  if (rest.length || json === undefined) throw new Error('usage: fork-process-main.js <memserver|memtap|memtap-worker> <options as JSON>');
  let options: unknown;
  try {
    options = JSON.parse(json);
  } catch (e) {
    throw new Error(`fork process options are not JSON: ${(e as Error).message}`);
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new Error('fork process options must be a JSON object');
  const o = options as Record<string, unknown>;
  const need = (key: string, type: 'string' | 'number') => {
    if (typeof o[key] !== type) throw new Error(`fork process option "${key}" must be a ${type}`);
  };
  if (role === 'memserver') {
    for (const k of ['descriptor', 'image', 'tokenFile'] as const) need(k, 'string');
    need('clones', 'number');
    return { role, options: o as unknown as MemServerProcessOptions };
  }
  if (role === 'memtap' || role === 'memtap-worker') {
    for (const k of ['domid', 'port', 'vmid'] as const) need(k, 'number');
    for (const k of ['host', 'tokenFile'] as const) need(k, 'string');
    return { role, options: o as unknown as MemtapProcessOptions };
  }
  throw new Error(`unknown fork process role "${role}"`);
}
