// Reading the memtest workload of the test guest (images/testguest/memtest.c) off a console:
// every pass verifies the whole pattern area and says how many pages did not match.
import { readConsole } from '../../lib/xen/console.js';

export interface MemPass {
  pass: number;
  gen: number;
  bad: number;
  pages: number;
  vmid: number;
}

export function memPasses(name: string, vmid?: number): MemPass[] {
  const out: MemPass[] = [];
  for (const m of readConsole(name).matchAll(/SF-MEM pass=(\d+) gen=(\d+) bad=(\d+) pages=(\d+) vmid=(\d+)/g)) {
    const p = { pass: Number(m[1]), gen: Number(m[2]), bad: Number(m[3]), pages: Number(m[4]), vmid: Number(m[5]) };
    if (vmid === undefined || p.vmid === vmid) out.push(p);
  }
  return out;
}

/** the memtest cmdline: `mb` MiB of pattern, rewritten each pass in the parent */
export function memtestCmdline(o: { mb: number; mode: 'verify' | 'rewrite' | 'alloc'; allocMb?: number; reportFree?: boolean }): string {
  // 2-level event channels: a resumed FIFO-ABI kernel maps its control blocks synchronously
  // (see docs/memtap.md), 2-level lives in shared_info.
  return [
    'xen.fifo_events=0',
    'sf.workload=memtest',
    `sf.mb=${o.mb}`,
    `sf.mode=${o.mode}`,
    o.allocMb ? `sf.allocmb=${o.allocMb}` : '',
    o.reportFree ? 'sf.reportfree=1' : '',
  ]
    .filter(Boolean)
    .join(' ');
}
