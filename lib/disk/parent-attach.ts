// A parent's disk through its family from boot: what the block-snowflock hotplug script asks
// for (scripts/xen/block-snowflock). On "add" the image becomes the family's head
// `<vm>/<disk>` (addParentDisk; the family's daemon started if it has none) and the head's
// export is connected to a free /dev/nbdN, which blkback then serves to the guest; on "remove"
// the nbd connection ends and the head leaves the family (its files are kept), unless a fork
// of it is still exported.
import { useFamily } from './use-family.js';
import { DiskError } from './errors.js';
import { attachNbd, detachNbd, type NbdAttachment, type NbdHost } from './nbd-attach.js';

export interface ParentDiskOptions {
  family: string;
  vm: string;
  disk: string;
  /** the image (raw or qcow2 file, or a block device); absent: the head must exist already */
  image?: string;
  format?: 'raw' | 'qcow2';
  stateDir?: string;
  nbd?: NbdHost;
  log?: (message: string) => void;
}

export async function attachParentDisk(o: ParentDiskOptions): Promise<NbdAttachment & { added: boolean }> {
  return useFamily(o.family, o, async (f) => {
    const head = f.heads().find((h) => h.vm === o.vm && h.disk === o.disk);
    if (head && head.kind !== 'parent') throw new DiskError('exists', `${o.vm}/${o.disk} in family ${o.family} is a clone's disk, not a parent's`);
    if (head?.fault) throw new DiskError(head.fault.code, `${o.vm}/${o.disk} in family ${o.family} is not open: ${head.fault.message}`);
    if (!head && !o.image) throw new DiskError('not-found', `family ${o.family} has no disk ${o.vm}/${o.disk}, and no image was given to add it from`);
    let added = false;
    if (!head) {
      await f.addParentDisk({ vm: o.vm, disk: o.disk, image: o.image!, ...(o.format ? { format: o.format } : {}) });
      added = true;
    }
    try {
      const a = await attachNbd({ socket: f.nbdSocket, export: `${o.vm}/${o.disk}`, ...(o.nbd ? { host: o.nbd } : {}) });
      return { ...a, added };
    } catch (e) {
      if (added) await f.removeVm(o.vm).catch(() => undefined);
      throw e;
    }
  });
}

/** Ends the device's connection; with family and vm, takes the VM's disks out of the family too. */
export async function detachParentDisk(o: { device: string; family?: string; vm?: string; stateDir?: string; nbd?: NbdHost; log?: (m: string) => void }): Promise<{ removed: boolean; why?: string }> {
  await detachNbd(o.device, { ...(o.nbd ? { host: o.nbd } : {}) });
  if (!o.family || !o.vm) return { removed: false };
  const vm = o.vm;
  return useFamily(o.family, o, async (f) => {
    try {
      await f.removeVm(vm);
      return { removed: true };
    } catch (e) {
      // A fork of the parent still exported keeps its head (its clones read the slices under it).
      if (e instanceof DiskError && (e.code === 'in-use' || e.code === 'not-found')) return { removed: false, why: e.message };
      throw e;
    }
  });
}
