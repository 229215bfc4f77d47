// Making an on-demand clone whole: its memtap loads every page the clone has not touched yet,
// then closes the paging ring, takes the ring page out of the clone and says goodbye to the
// memserver. What is left is an ordinary domain that needs neither the parent's host nor
// memtap: xl save, xl migrate and a later fork treat it as any other (SnowFlock's clones were
// always ephemeral; users of VM templates keep the good one).
import { readFileSync } from 'node:fs';
import type { XenControl, XenStore } from '../xen/native.js';
import { readMemoryState } from '../memtap/memory-state.js';
import { readMemtapRecord } from '../memtap/records.js';

export class SettleError extends Error {}

export interface SettleResult {
  domid: number;
  /** true when the clone was whole already (an eager clone, or settled before) */
  already: boolean;
  ms: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The memtap worker serving domid, checked to be one (a pid in the record may have been reused). */
function memtapPid(xs: XenStore, domid: number): number {
  const record = readMemtapRecord(xs, domid);
  if (!record || !Number.isInteger(record.pid) || record.pid <= 1) throw new SettleError(`no memtap serves domain ${domid} (its record is gone)`);
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${record.pid}/cmdline`, 'utf8');
  } catch {
    throw new SettleError(`domain ${domid}'s memtap (pid ${record.pid}) is not running`);
  }
  if (!cmdline.includes('memtap')) throw new SettleError(`pid ${record.pid} in domain ${domid}'s memtap record is not a memtap`);
  return record.pid;
}

export async function settleClone(xc: XenControl, xs: XenStore, domid: number, o: { timeoutMs: number; progress?: (m: string) => void }): Promise<SettleResult> {
  const started = Date.now();
  if (xs.read(`/local/domain/${domid}/snowflock/vmid`) === null) throw new SettleError(`domain ${domid} is not a clone snowflock built`);
  const state = readMemoryState(xs, domid);
  if (state === null || state === 'whole') return { domid, already: true, ms: 0 };
  if (state.startsWith('failed')) throw new SettleError(`domain ${domid} cannot be settled: its memory ${state}`);
  process.kill(memtapPid(xs, domid), 'SIGUSR2');
  let lastReport = Date.now();
  for (;;) {
    const now = readMemoryState(xs, domid);
    if (now === 'whole') break;
    if (now?.startsWith('failed')) throw new SettleError(`settling domain ${domid} failed: its memory ${now}`);
    if (Date.now() - started > o.timeoutMs) throw new SettleError(`domain ${domid} was not settled within ${Math.round(o.timeoutMs / 1000)} s (memory ${now}); memtap goes on loading`);
    if (Date.now() - lastReport > 5_000) {
      o.progress?.(`domain ${domid}: ${Math.round((xc.domainInfo(domid).pagedPages * 4) / 1024)} MiB still to load`);
      lastReport = Date.now();
    }
    await sleep(200);
  }
  const left = xc.domainInfo(domid).pagedPages;
  if (left !== 0) throw new SettleError(`domain ${domid} was reported settled with ${left} pages still paged out`);
  return { domid, already: false, ms: Date.now() - started };
}
