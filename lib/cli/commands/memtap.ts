import type { Argv } from 'yargs';
import { readTokenFile } from '../../memtap/token.js';
import { secondsOption } from '../errors.js';
import { superviseMemtap } from '../../memtap/tap-supervisor.js';

const emit = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...event }) + '\n');

function parseServer(s: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`--server must be host:port, got "${s}"`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
}

export function memtapCommand(y: Argv) {
  return y.command(
    'memtap',
    'Serve one clone\'s memory on demand from a memserver (started by `clone`; runs until the clone is gone)',
    (a) =>
      a
        .option('domid', { type: 'number', demandOption: true, describe: 'the clone (built paused, memory not yet out)' })
        .option('server', { type: 'string', demandOption: true, describe: 'memserver host:port' })
        .option('token-file', { type: 'string', demandOption: true, describe: 'file with the fork\'s 64-hex-digit session key' })
        .option('vmid', { type: 'number', demandOption: true, describe: 'the clone\'s id in its family (1..n)' })
        .option('prefetch', { type: 'number', default: 64, describe: 'neighbour pages loaded with each fault (0..127)' })
        .option('heuristics', { type: 'boolean', default: true, describe: 'zero-fill the pages the clone reports free at fork (--no-heuristics fetches them)' })
        .option('free-report-wait', { type: 'number', default: 0, describe: 'load no neighbours of a fault until the clone\'s free-page report is applied, at most this many seconds' })
        .option('backend', { choices: ['paging', 'access'] as const, default: 'paging' as const, describe: 'paging: mem_paging (Xen with CONFIG_MEM_PAGING); access: mem_access (stock Xen, Intel EPT only)' })
        .epilogue('Prints one JSON line per event (ready, memserver-lost, memserver-back, memtap-lost, memtap-restarted, free-report, exit). '
          + 'If the memserver is lost the clone is paused until it is back; if the fault loop dies the clone is paused and a new one takes over.'),
    async (argv) => {
      const server = parseServer(argv.server);
      readTokenFile(argv['token-file']); // a bad key file fails here, not in the worker
      process.exitCode = await superviseMemtap({
        worker: { domid: argv.domid, host: server.host, port: server.port, tokenFile: argv['token-file'], vmid: argv.vmid, prefetch: argv.prefetch, heuristics: argv.heuristics, freeReportWaitMs: secondsOption(argv['free-report-wait'], '--free-report-wait') * 1000, backend: argv.backend },
        emit,
      });
    },
  );
}
