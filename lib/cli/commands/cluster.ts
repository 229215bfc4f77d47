// The cluster as this host's daemon sees it, for dom0's operator: `snowflock hosts` (every host
// daemon the master knows, with capacity and use) and `snowflock families` (every fork family:
// parents, tickets, clones with their hosts and state). Both ask the local host daemon over its
// admin socket, which relays to the master.
import type { Argv } from 'yargs';
import { DEFAULT_ADMIN_SOCKET, askHostDaemon } from '../../daemon/admin-socket.js';
import type { AdminResults } from '../../daemon/messages.js';
import { printJson, table } from '../output.js';

const socketOption = { type: 'string', default: DEFAULT_ADMIN_SOCKET, describe: 'the host daemon\'s admin socket' } as const;

export function hostsTable(h: AdminResults['hosts']): string {
  return table(['HOST', 'LINK', 'VCPUS(used/all)', 'MEM(MiB used/all)'], h.hosts.map((x) => [
    x.name, x.connected ? 'up' : 'down', `${x.usedVcpus ?? 0}/${x.vcpus}`, `${x.usedMemoryMiB ?? 0}/${x.memoryMiB}`,
  ]));
}

export function familiesTable(f: AdminResults['families']): string {
  const rows: (string | number)[][] = [];
  for (const fam of f.families) {
    rows.push([fam.family, '-', 'parent', `${fam.parent.host}/${fam.parent.domid}`, 'running']);
    for (const t of fam.tickets) if (t.state === 'granted') rows.push([fam.family, t.ticket, `ticket (${t.granted})`, '-', 'unused']);
    for (const c of fam.children) rows.push([fam.family, c.ticket, `clone ${c.vmid}`, `${c.host}/${c.domid ?? '-'}`, c.state]);
  }
  const text = rows.length ? table(['FAMILY', 'TICKET', 'VM', 'HOST/DOMID', 'STATE'], rows) : 'no fork families';
  return f.truncated ? `${text}\n(more families than shown)` : text;
}

export function clusterCommands(y: Argv) {
  return y
    .command('hosts', 'List the hosts of the cluster: their daemons\' link to the master, capacity and use', (a) => a.option('socket', socketOption), async (argv) => {
      const h = await askHostDaemon(argv.socket, 'hosts');
      if (argv.json) printJson(h);
      else console.log(hostsTable(h));
    })
    .command('families', 'List fork families: parents, tickets, and clones with their hosts and state', (a) => a.option('socket', socketOption), async (argv) => {
      const f = await askHostDaemon(argv.socket, 'families');
      if (argv.json) printJson(f);
      else console.log(familiesTable(f));
    });
}
