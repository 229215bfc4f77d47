// A clone's memory state, where `snowflock list` and operators read it: on-demand while memtap
// serves it, "paused: ..." while it waits, "failed: ..." when memtap gave up (the clone stays
// paused). In the clone's home, under snowflock/, which only dom0 may write.
import type { XenStore } from '../xen/native.js';

export const memoryStatePath = (domid: number) => `/local/domain/${domid}/snowflock/memory`;

export function writeMemoryState(xs: XenStore, domid: number, state: string): void {
  try {
    // A write would create the path: never bring back the home of a clone that is gone.
    if (xs.read(`/local/domain/${domid}/snowflock/vmid`) === null) return;
    xs.write(memoryStatePath(domid), state.slice(0, 400));
  } catch {
    /* the clone is gone: nothing to describe */
  }
}

export function readMemoryState(xs: XenStore, domid: number): string | null {
  return xs.read(memoryStatePath(domid));
}
