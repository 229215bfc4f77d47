// Entry point of a fork's long-lived processes (see fork-process.ts). Loads only its role's code.
import { parseForkProcessArgv } from './fork-process.js';

const emit = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...event }) + '\n');

async function main(): Promise<number> {
  const p = parseForkProcessArgv(process.argv.slice(2));
  switch (p.role) {
    case 'memserver': {
      const { runMemServer } = await import('./serve-command.js');
      return runMemServer({ ...p.options, json: true });
    }
    case 'memtap': {
      const { superviseMemtap } = await import('./tap-supervisor.js');
      return superviseMemtap({ worker: p.options, emit });
    }
    case 'memtap-worker': {
      const [{ runMemtapWorker }, { readTokenFile }] = await Promise.all([import('./tap-worker.js'), import('./token.js')]);
      const { tokenFile, ...rest } = p.options;
      return runMemtapWorker({ ...rest, token: readTokenFile(tokenFile), emit });
    }
  }
}

main().then(
  (code) => (process.exitCode = code),
  (e: Error) => {
    emit({ event: 'error', message: e.message });
    process.exitCode = 1;
  },
);
