import type { Argv } from 'yargs';
import { runDoctor, type Check } from '../../doctor/index.js';
import { ExitCode, printJson, table } from '../output.js';

const MARK: Record<Check['status'], string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: '-' };

export function doctorCommand(y: Argv) {
  return y.command(
    'doctor',
    'Tell what this host can do for snowflock (Xen, memory features, namespaces, test box), and why not',
    (a) =>
      a
        .option('probe', { type: 'boolean', default: true, describe: 'probe Xen memory features on a throwaway domain (--no-probe to skip)' })
        .option('require', { type: 'array', string: true, default: [] as string[], describe: 'exit 1 unless these check ids are ok, e.g. --require xen.mem-paging' })
        .example('$0 doctor', 'human-readable report')
        .example('$0 doctor --json --require xen.hvm xen.mem-paging', 'for scripts'),
    async (argv) => {
      const checks = await runDoctor({ probeFeatures: argv.probe });
      const required = argv.require as string[];
      const unknown = required.filter((id) => !checks.some((c) => c.id === id));
      const missing = required.filter((id) => checks.find((c) => c.id === id)?.status !== 'ok');
      if (argv.json) {
        printJson({ checks, required, missing });
      } else {
        console.log(table(['CHECK', 'STATUS', 'DETAIL'], checks.map((c) => [c.id, MARK[c.status], c.detail])));
        if (unknown.length) console.log(`\nunknown check ids: ${unknown.join(', ')}`);
        if (missing.length) console.log(`\nrequired but not ok: ${missing.join(', ')}`);
      }
      process.exitCode = missing.length ? ExitCode.failed : ExitCode.ok;
    },
  );
}
