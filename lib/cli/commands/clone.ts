import type { Argv } from 'yargs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withXenSession } from '../../xen/session.js';
import { resolveDomain } from '../../xen/resolve.js';
import { cloneEager } from '../../clone/eager.js';
import { printJson, progress, table } from '../output.js';

export function cloneCommand(y: Argv) {
  return y.command(
    'clone <domain>',
    'Clone a running PVH/HVM guest on this host (eager: full memory copy; memory on demand comes with memtap)',
    (a) =>
      a
        .positional('domain', { type: 'string', demandOption: true, describe: 'domid or name' })
        .option('count', { alias: 'n', type: 'number', default: 1, describe: 'how many clones (1..64)' })
        .option('workdir', { type: 'string', default: join(tmpdir(), 'snowflock'), describe: 'where the temporary memory image goes' })
        .example('$0 clone web -n 4', 'four clones of the domain named web'),
    async (argv) => {
      await withXenSession(async (xc, xs) => {
        const domid = resolveDomain(xc, xs, argv.domain);
        const r = await cloneEager(xc, xs, domid, { count: argv.count, workdir: argv.workdir, progress });
        if (argv.json) printJson(r);
        else {
          console.log(table(['VMID', 'DOMID', 'NAME', 'BUILD(ms)'], r.clones.map((c) => [c.vmid, c.domid, c.name, c.buildMs])));
          console.log(`parent ${r.parent.name} (domain ${r.parent.domid}) stopped ${r.pauseMs} ms; descriptor ${r.descriptorBytes} bytes; image ${r.imagePages} pages`);
        }
      });
    },
  );
}
