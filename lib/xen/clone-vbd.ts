// A guest's disks served through a disk family (lib/disk): the vbd backend and frontend entries
// libxl lays out for a `phy:` disk, written by snowflock for a clone (whose disk is an nbd
// device connected to its overlay), and the parent's disks read back at a fork. The backend
// directory is dom0's: only it says which family disk a vbd is (`snowflock-disk`), never the
// guest's frontend directory.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { XenStore } from './native.js';
import { domainPath } from './domain-xenstore.js';

/** A vbd of a VM whose disk is a head of a disk family: what a fork freezes and a clone gets. */
export interface VbdRecord {
  /** the frontend's device number (xvda: 51712) */
  devid: number;
  /** the guest's name for it (libxl's "dev": xvda) */
  vdev: string;
  /** "w" or "r" */
  mode: string;
  /** the disk family, the VM's name and the disk's name in it */
  family: string;
  vm: string;
  disk: string;
}

export class CloneVbdError extends Error {}

/** The backend key, in dom0's backend directory, naming the family disk behind a vbd: "family:vm/disk". */
export const DISK_KEY = 'snowflock-disk';

/**
 * The hotplug script libxl runs for a clone's vbd when it removes it (xl destroy): it disconnects
 * and removes the overlay. libxl reads it from the backend (libxl_linux.c), as the absolute path
 * it writes there itself for a parent's disk.
 */
export const CLONE_VBD_SCRIPT = '/etc/xen/scripts/block-snowflock';

export const vbdBackendPath = (domid: number, devid: number) => `/local/domain/0/backend/vbd/${domid}/${devid}`;
export const vbdFrontendPath = (domid: number, devid: number) => `${domainPath(domid)}/device/vbd/${devid}`;

/** "family:vm/disk" (block-snowflock's target without an image, and the backend's snowflock-disk). */
export function parseDiskTarget(target: string): { family: string; vm: string; disk: string } | null {
  const m = /^([A-Za-z0-9][\w.-]{0,63}):([A-Za-z0-9][\w.-]{0,63})\/([A-Za-z0-9][\w.-]{0,63})$/.exec(target);
  return m ? { family: m[1]!, vm: m[2]!, disk: m[3]! } : null;
}

export const diskTarget = (r: { family: string; vm: string; disk: string }) => `${r.family}:${r.vm}/${r.disk}`;

/**
 * The VM's vbds that are family disks (backend in dom0 naming this frontend back, with
 * `snowflock-disk`), and the vbd ids that are not (a clone could not get those).
 */
export function readVbds(xs: XenStore, domid: number): { vbds: VbdRecord[]; others: string[] } {
  const vbds: VbdRecord[] = [];
  const others: string[] = [];
  for (const id of xs.directory(`${domainPath(domid)}/device/vbd`) ?? []) {
    const r = readVbd(xs, domid, id);
    if (r) vbds.push(r);
    else others.push(id);
  }
  return { vbds, others };
}

function readVbd(xs: XenStore, domid: number, id: string): VbdRecord | null {
  if (!/^\d{1,9}$/.test(id)) return null;
  const devid = Number(id);
  const back = vbdBackendPath(domid, devid);
  const front = vbdFrontendPath(domid, devid);
  if (xs.read(`${front}/backend`) !== back) return null;
  if (xs.read(`${back}/frontend-id`) !== String(domid) || xs.read(`${back}/frontend`) !== front) return null;
  const target = parseDiskTarget(xs.read(`${back}/${DISK_KEY}`) ?? '');
  if (!target) return null;
  const mode = xs.read(`${back}/mode`) === 'r' ? 'r' : 'w';
  const vdev = xs.read(`${back}/dev`) ?? '';
  if (!/^[a-z]{1,8}[a-z0-9]{0,8}$/.test(vdev)) return null;
  return { devid, vdev, mode, ...target };
}

/** A clone's vbd: the record (for vdev, mode) with the clone's own family disk and its nbd device. */
export interface CloneVbd {
  record: VbdRecord;
  /** the clone's head in the family: "family:clone/disk" */
  target: { family: string; vm: string; disk: string };
  /** /dev/nbdN */
  device: string;
  /** "2b:10", major:minor in hex */
  physicalDevice: string;
}

/**
 * Writes the clone's vbds as libxl writes a `phy:` disk, with physical-device already there (as a
 * block hotplug script would have written it) and the backend's state last. The clone must not
 * run yet: its blkfront reconnects on resume and resubmits what the parent had in flight.
 */
export function writeCloneVbds(xs: XenStore, domid: number, vbds: CloneVbd[]): void {
  for (const v of vbds) {
    const { devid } = v.record;
    const back = vbdBackendPath(domid, devid);
    const front = vbdFrontendPath(domid, devid);
    // dom0 owns the backend, the guest may read it; the guest owns its frontend (libxl's layout).
    const backPerms = [{ domid: 0 }, { domid, read: true }];
    const frontPerms = [{ domid }, { domid: 0, read: true }];
    xs.mkdir(front);
    xs.setPermissions(front, frontPerms);
    for (const [k, v2] of Object.entries({
      'backend': back, 'backend-id': '0', 'virtual-device': String(devid), 'device-type': 'disk', 'state': '1',
    })) {
      xs.write(`${front}/${k}`, v2);
      xs.setPermissions(`${front}/${k}`, frontPerms);
    }
    xs.mkdir(back);
    xs.setPermissions(back, backPerms);
    const entries: [string, string][] = [
      ['frontend', front], ['frontend-id', String(domid)], ['online', '1'], ['removable', '0'], ['bootable', '1'],
      ['dev', v.record.vdev], ['type', 'phy'], ['mode', v.record.mode], ['device-type', 'disk'], ['discard-enable', '1'],
      ['params', v.device], [DISK_KEY, diskTarget(v.target)], ['script', CLONE_VBD_SCRIPT],
      // What a block hotplug script writes once the device exists; blkback opens it on seeing it.
      ['physical-device', v.physicalDevice], ['physical-device-path', v.device], ['hotplug-status', 'connected'],
      ['state', '1'],
    ];
    for (const [k, val] of entries) xs.write(`${back}/${k}`, val);
    writeLibxlVbdEntries(xs, domid, v);
  }
}


/**
 * libxl's own directory for the vbd (/libxl/<domid>/device/vbd/<devid>), as it keeps one per
 * device: xl destroy lists devices there, so the vbd is taken down and the backend's script run
 * with "remove" (the nbd connection ends, the clone's overlay leaves its family), as for a disk libxl
 * made itself. (The clone's libxl configuration lists no disks: xl save or migrate of a clone
 * with disks is not supported.)
 */
function writeLibxlVbdEntries(xs: XenStore, domid: number, v: CloneVbd): void {
  const dir = `/libxl/${domid}/device/vbd/${v.record.devid}`;
  const entries: Record<string, string> = {
    frontend: vbdFrontendPath(domid, v.record.devid), backend: vbdBackendPath(domid, v.record.devid),
    'frontend-id': String(domid), 'backend-id': '0', online: '1', removable: '0', bootable: '1', state: '1',
    dev: v.record.vdev, type: 'phy', mode: v.record.mode, 'device-type': 'disk', params: v.device, script: CLONE_VBD_SCRIPT,
  };
  for (const [k, val] of Object.entries(entries)) xs.write(`${dir}/${k}`, val);
}

/** What a clone's vbd backend says it holds: its nbd device and family disk (destroy reads it back). */
export function readCloneVbdBackends(xs: XenStore, domid: number): { devid: number; device: string | null; target: { family: string; vm: string; disk: string } | null }[] {
  return (xs.directory(`/local/domain/0/backend/vbd/${domid}`) ?? []).filter((id) => /^\d{1,9}$/.test(id)).map((id) => {
    const back = vbdBackendPath(domid, Number(id));
    const device = xs.read(`${back}/physical-device-path`) ?? xs.read(`${back}/params`);
    return { devid: Number(id), device: device && /^\/dev\/nbd\d+$/.test(device) ? device : null, target: parseDiskTarget(xs.read(`${back}/${DISK_KEY}`) ?? '') };
  });
}

/** Removes the clone's vbd backends (blkback then closes the devices); safe when gone. */
export function removeCloneVbds(xs: XenStore, domid: number): void {
  xs.rm(`/local/domain/0/backend/vbd/${domid}`);
}

/**
 * dom0's kernel still has the backend device: blkback holds its disk until it unregisters it,
 * which comes after its xenstore node goes (so a node that is gone proves nothing by itself).
 */
const backendDeviceAlive = (sysfs: string, domid: number, devid: number) => existsSync(join(sysfs, `vbd-${domid}-${devid}`));

/**
 * Waits until blkback has let go of each backend (state Closed or the node gone, and its kernel
 * device gone from `sysfs`), at most timeoutMs; returns the devids still held.
 */
export async function waitVbdsClosed(xs: XenStore, domid: number, devids: number[], timeoutMs = 5000, sysfs = '/sys/bus/xen-backend/devices'): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let open = devids;
  for (;;) {
    open = open.filter((d) => {
      const s = xs.read(`${vbdBackendPath(domid, d)}/state`);
      return (s !== null && s !== '6') || backendDeviceAlive(sysfs, domid, d);
    });
    if (!open.length || Date.now() > deadline) return open;
    await new Promise((r) => setTimeout(r, 100));
  }
}
