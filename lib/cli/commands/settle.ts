import type { Argv } from 'yargs';
import { withXenSession } from '../../xen/session.js';
import { resolveDomain } from '../../xen/resolve.js';
import { settleClone } from '../../clone/settle.js';
import { printJson, progress } from '../output.js';
import { secondsOption } from '../errors.js';

export function settleCommand(y: Argv) {
  return y.command(
    'settle <domain>',
    'Make an on-demand clone whole: load every page it has not touched, then detach memtap and the memserver, leaving an ordinary domain (for xl save, xl migrate, keeping it)',
    (a) =>
      a
        .positional('domain', { type: 'string', demandOption: true, describe: 'the clone: domid or name' })
        .option('timeout', { type: 'number', default: 600, describe: 'seconds to wait for the last page' })
        .example('$0 settle web-3f2a1c-1 && xl save web-3f2a1c-1 web.save', 'keep a clone'),
    async (argv) => {
      const timeoutMs = secondsOption(argv.timeout, '--timeout', 86_400) * 1000;
      const r = await withXenSession((xc, xs) => settleClone(xc, xs, resolveDomain(xc, xs, argv.domain), { timeoutMs, progress }));
      if (argv.json) printJson(r);
      else console.log(r.already ? `domain ${r.domid} is whole already` : `domain ${r.domid} settled in ${(r.ms / 1000).toFixed(1)} s: it no longer needs memtap or the memserver`);
    },
  );
}
