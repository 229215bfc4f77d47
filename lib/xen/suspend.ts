// Cooperative suspend, the way `xl save` and SnowFlock take a VM's state: the guest kernel
// itself quiesces and calls SCHEDOP_shutdown(suspend). A clone taken there runs the kernel's
// own resume path and rebinds its timers, event channels and vcpu_info in the new domain;
// a merely paused parent would leave those behind in the old one.
import type { XenControl, XenStore } from './native.js';

export class SuspendError extends Error {
  override name = 'SuspendError';
}

/**
 * The mark that a suspend of an on-demand clone is snowflock's own (a capture, which reads paged-out
 * pages itself): without it the clone's memtap holds the clone and loads every page first, as it
 * does for xl save (native/suspend_watch.h). Next to memtap's record (lib/memtap/records.ts), dom0-only.
 */
const memtapRecord = (domid: number) => `/local/domain/0/snowflock/memtap/${domid}`;
const ownSuspendMark = (domid: number) => `${memtapRecord(domid)}/own-suspend`;

export async function suspendDomain(xc: XenControl, xs: XenStore, domid: number, timeoutMs = 30_000): Promise<void> {
  const control = `/local/domain/${domid}/control/shutdown`;
  const served = xs.read(`${memtapRecord(domid)}/xen-port`) !== null;
  if (served) xs.write(ownSuspendMark(domid), '1');
  try {
    xs.write(control, 'suspend');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const d = xc.domainInfo(domid);
      if (d.shutdownReason === 'suspend') return;
      if (d.shutdownReason) throw new SuspendError(`domain ${domid} shut down (${d.shutdownReason}) instead of suspending`);
      if (Date.now() > deadline) {
        xs.rm(control);
        throw new SuspendError(`domain ${domid} did not suspend within ${timeoutMs / 1000} s: its kernel does not answer control/shutdown=suspend`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    try {
      if (served) xs.rm(ownSuspendMark(domid));
    } catch {
      /* gone with memtap's record */
    }
  }
}

/**
 * Lets a suspended parent carry on as if the suspend had been cancelled, and tells xenstored it
 * runs again: xenstored fires @releaseDomain only when a domain newly shuts down, so without it
 * the parent's next suspend (an `xl save`, whose libxl waits on that watch) would go unnoticed.
 */
export function resumeSuspended(xc: XenControl, xs: XenStore, domid: number): void {
  xc.unpause(domid);
  xc.resume(domid, true);
  xs.resumeDomain(domid);
}
