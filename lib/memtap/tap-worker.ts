// One clone's memtap, as a process: prepares the clone (or takes over its ring), runs the
// native fault loop, applies the clone's free-page report when it appears, and ends when
// the clone's domain is gone, or once it is settled (SIGUSR2: every page loaded, memtap out of the
// clone). Every event is one JSON line on stdout.
import { loadAddon, isNativeXenError, type MemtapOptions, type MemtapPrepareReport } from '../xen/native.js';
import { openXen } from '../xen/control.js';
import { freeAppliedPath, readFreeReport } from './free-report.js';
import { removeMemtapRecord, writeMemtapRecord } from './records.js';

export interface MemtapWorkerOptions extends Omit<MemtapOptions, 'timeoutMs'> {
  /** apply the clone's free-page report (default true); off only to measure what it saves */
  heuristics?: boolean;
  /**
   * With the heuristic on, load no neighbours until the clone's free-page report is applied, at
   * most this long (default 0: prefetch from the start). Neighbours loaded before the report
   * may be pages it names, fetched for nothing; holding costs the clone's early faults their
   * neighbours, so it pays only for guests whose agent reports.
   */
  freeReportWaitMs?: number;
  emit: (event: Record<string, unknown>) => void;
}

// A guest's report cannot name frames beyond this (16 TiB of guest memory).
const MAX_REPORTED_GFN = 2 ** 32;

export async function runMemtapWorker(o: MemtapWorkerOptions): Promise<number> {
  const addon = loadAddon();
  const xc = openXen();
  const xs = new addon.XenStore();
  const server = `${o.host}:${o.port}`;
  const tap = new addon.Memtap({
    domid: o.domid, host: o.host, port: o.port, token: o.token, vmid: o.vmid, prefetch: o.prefetch, takeover: o.takeover, backend: o.backend,
  });
  let report: MemtapPrepareReport;
  try {
    report = await tap.prepare();
  } catch (e) {
    o.emit({ event: 'error', message: (e as Error).message, ...(isNativeXenError(e) ? { code: e.code } : {}) });
    xs.close();
    xc.close();
    return 1;
  }
  writeMemtapRecord(xs, o.domid, { pid: process.pid, xenPort: report.xenPort, server, vmid: o.vmid });
  o.emit({ event: 'ready', domid: o.domid, vmid: o.vmid, server, backend: o.backend ?? 'paging', takeover: o.takeover === true, ...report });

  return new Promise<number>((resolve) => {
    let freeReportDone = false;
    let finished = false;
    const finish = async (why: string, code: number) => {
      if (finished) return;
      finished = true;
      clearInterval(watch);
      clearTimeout(holdTimer);
      await tap.stop();
      if (why === 'domain-gone' || why === 'settled') {
        await tap.goodbye();
        removeMemtapRecord(xs, o.domid);
      }
      o.emit({ event: 'exit', why, stats: tap.stats() });
      xs.close();
      xc.close();
      resolve(code);
    };
    // Hold neighbour prefetch (see freeReportWaitMs) from the first fault on.
    const prefetch = o.prefetch ?? 64;
    let holding = o.heuristics !== false && prefetch > 0 && (o.freeReportWaitMs ?? 0) > 0;
    const resumePrefetch = (why: string) => {
      if (!holding) return;
      holding = false;
      clearTimeout(holdTimer);
      tap.setPrefetch(prefetch);
      o.emit({ event: 'prefetch-resumed', why, pages: prefetch });
    };
    if (holding) tap.setPrefetch(0);
    const holdTimer = holding ? setTimeout(() => resumePrefetch('no free-page report in time'), o.freeReportWaitMs) : undefined;
    tap.start((e) => {
      o.emit({ event: e.type, ...(e.message ? { message: e.message } : {}) });
      if (e.type === 'failed') void finish('failed', 1);
      if (e.type === 'settled') void finish('settled', 0);
    });
    const acknowledge = (value: string) => {
      resumePrefetch('free-page report applied');
      try {
        xs.write(freeAppliedPath(o.domid), value);
      } catch {
        /* the domain is going away; the guest stops waiting on its own */
      }
    };
    const watch = setInterval(() => {
      try {
        if (xc.domainInfo(o.domid).dying) return void finish('domain-gone', 0);
      } catch {
        return void finish('domain-gone', 0);
      }
      if (freeReportDone) return;
      try {
        const ranges = readFreeReport(xs, o.domid, MAX_REPORTED_GFN);
        if (!ranges) return;
        freeReportDone = true;
        const marked = o.heuristics === false ? 0 : tap.markFree(ranges);
        const pages = ranges.reduce((n, [, c]) => n + c, 0);
        acknowledge(String(marked));
        o.emit({ event: 'free-report', ranges: ranges.length, pages, marked, applied: o.heuristics !== false });
      } catch (e) {
        freeReportDone = true;
        acknowledge('rejected');
        o.emit({ event: 'free-report-rejected', message: (e as Error).message });
      }
    }, 250);
    process.on('SIGUSR1', () => o.emit({ event: 'stats', stats: tap.stats() }));
    // snowflock settle: load the rest and leave the clone an ordinary domain.
    process.on('SIGUSR2', () => {
      tap.settle();
      o.emit({ event: 'settle-started' });
    });
    process.once('SIGTERM', () => void finish('signal', 0));
    process.once('SIGINT', () => void finish('signal', 0));
  });
}
