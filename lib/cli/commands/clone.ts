import type { Argv } from 'yargs';
import { withXenSession } from '../../xen/session.js';
import { resolveDomain } from '../../xen/resolve.js';
import { cloneEager } from '../../clone/eager.js';
import { cloneLazy, DEFAULT_STATE_DIR } from '../../clone/lazy.js';
import { printJson, progress, table } from '../output.js';
import { secondsOption } from '../errors.js';

export function cloneCommand(y: Argv) {
  return y.command(
    'clone <domain>',
    'Clone a running guest on this host: memory on demand (memtap; PVH/HVM), or an eager full copy (PV guests too)',
    (a) =>
      a
        .positional('domain', { type: 'string', demandOption: true, describe: 'domid or name' })
        .option('count', { alias: 'n', type: 'number', default: 1, describe: 'how many clones (1..64)' })
        .option('memory', {
          choices: ['on-demand', 'eager'] as const,
          default: 'on-demand' as const,
          describe: 'on-demand: clones start with no memory and fetch pages as they touch them (needs Xen with mem_paging); eager: copy all of it first',
        })
        .option('prefetch', { type: 'number', default: 64, describe: 'on-demand: neighbour pages loaded with each fault (0..127)' })
        .option('heuristics', { type: 'boolean', default: true, describe: 'on-demand: zero-fill pages each clone reports free at fork instead of fetching them' })
        .option('free-report-wait', { type: 'number', default: 0, describe: 'on-demand: load no neighbours of a fault until the clone\'s free-page report is applied, at most this many seconds (for guests whose agent reports)' })
        .option('backend', {
          choices: ['paging', 'access'] as const,
          default: 'paging' as const,
          describe: 'on-demand: paging = mem_paging (Xen with CONFIG_MEM_PAGING, any CPU); access = mem_access (stock Xen, Intel EPT only)',
        })
        .option('state-dir', { type: 'string', default: DEFAULT_STATE_DIR, describe: 'on-demand: where the family\'s memory image, descriptor and logs live' })
        .option('disk-transport', {
          choices: ['front', 'mcdist'] as const,
          default: 'front' as const,
          describe: 'a parent with family disks: how clones read the fork\'s slices. front: each over the fork\'s TLS front; mcdist: over multicast (blocks sealed), one send for every clone that reads a block; a disk whose multicast does not work reads the front (the JSON says which)',
        })
        .option('workdir', { type: 'string', describe: 'eager: under which directory a private (0700) directory for the temporary memory image is made (default: the system\'s temporary directory)' })
        .example('$0 clone web -n 4', 'four clones of the domain named web, memory on demand')
        .example('$0 clone web --memory eager', 'one clone with a full copy of the memory'),
    async (argv) => {
      const freeReportWaitMs = secondsOption(argv['free-report-wait'], '--free-report-wait') * 1000;
      await withXenSession(async (xc, xs) => {
        const domid = resolveDomain(xc, xs, argv.domain);
        if (argv.memory === 'eager') {
          const r = await cloneEager(xc, xs, domid, { count: argv.count, workdir: argv.workdir, progress, diskOptions: { blocks: argv['disk-transport'] } });
          // A fork's disk keys stay in this process: the JSON names the exports, not their keys (nor the mcdist sessions').
          if (argv.json) printJson(r);
          else {
            console.log(table(['VMID', 'DOMID', 'NAME', 'BUILD(ms)'], r.clones.map((c) => [c.vmid, c.domid, c.name, c.buildMs])));
            console.log(`parent ${r.parent.name} (domain ${r.parent.domid}) stopped ${r.pauseMs} ms; descriptor ${r.descriptorBytes} bytes; image ${r.imagePages} pages`);
          }
          return;
        }
        const r = await cloneLazy(xc, xs, domid, { count: argv.count, stateDir: argv['state-dir'], prefetch: argv.prefetch, heuristics: argv.heuristics, freeReportWaitMs, backend: argv.backend, progress, diskOptions: { blocks: argv['disk-transport'] } });
        if (argv.json) printJson(r);
        else {
          console.log(table(['VMID', 'DOMID', 'NAME', 'PAGED-OUT', 'READY(ms)'], r.clones.map((c) => [c.vmid, c.domid, c.name, c.evicted, c.buildMs])));
          console.log(`parent ${r.parent.name} (domain ${r.parent.domid}) stopped ${r.pauseMs} ms; family ${r.family}; memserver pid ${r.memserver.pid} port ${r.memserver.port}`);
        }
      });
    },
  );
}
