// Where a running memtap leaves what its successor needs (dom0-only xenstore, so a guest
// cannot read or forge it): its pid, and Xen's end of the paging ring's event channel.
import type { XenStore } from '../xen/native.js';

export interface MemtapRecord {
  pid: number;
  xenPort: number;
  server: string;
  vmid: number;
}

export function memtapRecordPath(domid: number): string {
  return `/local/domain/0/snowflock/memtap/${domid}`;
}

export function writeMemtapRecord(xs: XenStore, domid: number, r: MemtapRecord): void {
  const base = memtapRecordPath(domid);
  xs.write(`${base}/pid`, String(r.pid));
  xs.write(`${base}/xen-port`, String(r.xenPort));
  xs.write(`${base}/server`, r.server);
  xs.write(`${base}/vmid`, String(r.vmid));
}

export function readMemtapRecord(xs: XenStore, domid: number): MemtapRecord | null {
  const base = memtapRecordPath(domid);
  const port = xs.read(`${base}/xen-port`);
  if (port === null) return null;
  return {
    pid: Number(xs.read(`${base}/pid`) ?? 0),
    xenPort: Number(port),
    server: xs.read(`${base}/server`) ?? '',
    vmid: Number(xs.read(`${base}/vmid`) ?? 0),
  };
}

export function removeMemtapRecord(xs: XenStore, domid: number): void {
  try {
    xs.rm(memtapRecordPath(domid));
  } catch {
    /* already gone */
  }
}
