import type { Argv } from 'yargs';
import { withXen } from '../../xen/control.js';
import { withXenSession } from '../../xen/session.js';
import { destroyClone } from '../../descriptor/restore.js';
import type { DomainInfo, XenStore } from '../../xen/native.js';
import { readMemoryState } from '../../memtap/memory-state.js';
import { printJson, table } from '../output.js';
import { UsageError } from '../errors.js';

function domid(value: unknown): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 0x7fef) throw new UsageError(`not a domain id: ${String(value)}`);
  return n;
}

function mib(pages: number): string {
  return String(Math.round((pages * 4) / 1024));
}

/** A domain with its name and, for a clone snowflock built, its parent and vmid (from its xenstore home). */
export interface ListedDomain extends DomainInfo {
  name: string | null;
  /** memory: on-demand, paused: ..., failed: ... (memtap's), or null for an eager clone */
  clone: { parent: string | null; vmid: number; memory: string | null } | null;
}

function describe(d: DomainInfo, xs: XenStore): ListedDomain {
  const home = `/local/domain/${d.domid}`;
  const vmid = xs.read(`${home}/snowflock/vmid`);
  return {
    ...d,
    name: xs.read(`${home}/name`) ?? null,
    clone: vmid === null ? null : { parent: xs.read(`${home}/snowflock/parent-name`) ?? null, vmid: Number(vmid), memory: readMemoryState(xs, d.domid) },
  };
}

function row(d: ListedDomain): (string | number)[] {
  return [d.name ?? '-', d.domid, d.type, mib(d.totPages), mib(d.pagedPages), d.onlineVcpus, d.state, (d.cpuTimeNs / 1e9).toFixed(1),
    d.clone ? `${d.clone.parent ?? '?'}#${d.clone.vmid}` : '-', d.clone?.memory ?? '-'];
}

export function domainCommands(y: Argv) {
  return y
    .command('list', 'List the domains on this host, as the hypervisor sees them', {}, async (argv) => {
      const domains = await withXenSession((xc, xs) => xc.listDomains().map((d) => describe(d, xs)));
      if (argv.json) printJson(domains);
      else console.log(table(['NAME', 'ID', 'TYPE', 'MEM(MiB)', 'PAGED(MiB)', 'VCPUS', 'STATE', 'TIME(s)', 'CLONE OF#VMID', 'CLONE MEMORY'], domains.map(row)));
    })
    .command('pause <domid>', 'Pause a domain', (a) => a.positional('domid', { type: 'number', demandOption: true }), async (argv) => {
      const id = domid(argv.domid);
      await withXen((xc) => xc.pause(id));
      if (argv.json) printJson({ paused: id });
    })
    .command('unpause <domid>', 'Unpause a domain', (a) => a.positional('domid', { type: 'number', demandOption: true }), async (argv) => {
      const id = domid(argv.domid);
      await withXen((xc) => xc.unpause(id));
      if (argv.json) printJson({ unpaused: id });
    })
    .command(
      'destroy <domid..>',
      'Destroy domains (clones or any other)',
      (a) => a.positional('domid', { type: 'number', array: true, demandOption: true }),
      async (argv) => {
        const ids = (argv.domid as unknown[]).map(domid);
        if (ids.includes(0)) throw new UsageError('refusing to destroy domain 0');
        await withXenSession(async (xc, xs) => {
          for (const id of ids) {
            // Also clears the xenstore home and /vm entry snowflock (or xl) made for it.
            const vm = xs.read(`/local/domain/${id}/vm`);
            if (!xc.listDomains().some((d) => d.domid === id)) throw new Error(`no domain ${id} on this host`);
            await destroyClone(xc, xs, id, vm?.startsWith('/vm/') ? vm.slice(4) : undefined);
          }
        });
        if (argv.json) printJson({ destroyed: ids });
      },
    );
}
