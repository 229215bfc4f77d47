// Taking a descriptor (and, for eager clones, a full memory image) from a running PVH/HVM
// guest. The parent is stopped only between its cooperative suspend and the end of the
// copy, then carries on through the fast resume path.
import { hostname } from 'node:os';
import type { XenControl, XenStore } from '../xen/native.js';
import { suspendDomain, resumeSuspended } from '../xen/suspend.js';
import { listDevices, domainPath } from '../xen/domain-xenstore.js';
import { readNics } from '../xen/clone-nic.js';
import { readVbds, type VbdRecord } from '../xen/clone-vbd.js';
import { DescriptorError } from './errors.js';
import { imageHeader, newImageId } from './memory-image.js';
import type { Descriptor } from './format.js';
import { capturePvStream, pvDescriptor } from './capture-pv.js';
import { readParentRecord } from './parent-record.js';

export interface CaptureOptions {
  /** write a full memory image here while the parent is suspended */
  memoryImage?: string;
  /**
   * Leave the parent suspended and paused; the caller resumes it with result.resumeParent()
   * once its clones are built, so the family starts together.
   */
  keepParentStopped?: boolean;
  progress?: (message: string) => void;
  /**
   * The fork's disks (lib/clone/fork-disks.ts): made ready while the parent runs, frozen while it
   * is stopped. A parent whose vbds are disk-family disks is refused without it.
   */
  disks?: (vbds: VbdRecord[]) => { prepare(): Promise<void>; freeze(): Promise<void> };
}

export interface CaptureResult {
  descriptor: Descriptor;
  /** from suspend request to parent running again (to the end of capture when kept stopped) */
  pauseMs: number;
  imagePages?: number;
  /** resumes a parent kept stopped; a no-op otherwise, and idempotent */
  resumeParent: () => void;
}

/** Frontend kinds a clone would resume with and find no backend for (vifs are recreated, clone-nic.ts). */
const NOT_RECREATED: Record<string, string> = {
  vbd: 'not disk-family disks: start the parent with script=block-snowflock (docs/disks.md)', qdisk: 'qdisk backends are not cloned: use script=block-snowflock (docs/disks.md)',
  '9pfs': 'not recreated for clones', vfb: 'not recreated for clones', vkbd: 'not recreated for clones',
  vtpm: 'not recreated for clones', vusb: 'not recreated for clones', vsnd: 'not recreated for clones',
  vdispl: 'not recreated for clones', pvcalls: 'not recreated for clones', pci: 'passthrough cannot be cloned',
};

/**
 * Devices a clone cannot be given yet, as a phrase ("2 vbd devices (not disk-family disks: ...)"),
 * or null; vbds served by a disk family (clone-vbd.ts) are left out by the caller: a clone resuming with a frontend whose backend it lacks waits on it
 * forever, so such parents are refused. Other entries under device/ (libxl's suspend/) are not devices.
 */
export function devicesClonesCannotHave(devices: Record<string, string[]>): string | null {
  const found = Object.entries(devices).filter(([cls, ids]) => cls in NOT_RECREATED && ids.length > 0);
  if (!found.length) return null;
  return found.map(([cls, ids]) => `${ids.length} ${cls} device${ids.length > 1 ? 's' : ''} (${NOT_RECREATED[cls]})`).join(', ');
}

export async function captureDescriptor(xc: XenControl, xs: XenStore, domid: number, opts: CaptureOptions = {}): Promise<CaptureResult> {
  const info = xc.domainInfo(domid); // ESRCH names an unknown domain
  if (domid === 0) throw new DescriptorError('domain 0 cannot be cloned');
  if (info.type === 'pv' && !opts.memoryImage) {
    throw new DescriptorError(`domain ${domid} is a PV guest: its clones can only be eager (memory on demand needs HAP, which PV domains never have); take a memory image with it`);
  }
  if (info.dying || (info.shutdownReason && info.shutdownReason !== 'suspend')) {
    throw new DescriptorError(`domain ${domid} is ${info.dying ? 'dying' : `shut down (${info.shutdownReason})`}`);
  }
  const name = xs.read(`${domainPath(domid)}/name`) ?? `domain-${domid}`;
  const devices = listDevices(xs, domid);
  const { vbds } = readVbds(xs, domid);
  const familyVbds = new Set(vbds.map((v) => String(v.devid)));
  const refused = devicesClonesCannotHave({ ...devices, ...(devices.vbd ? { vbd: devices.vbd.filter((id) => !familyVbds.has(id)) } : {}) });
  if (refused) throw new DescriptorError(`domain ${domid} (${name}) has ${refused}: its clones could not reconnect them`);
  if (vbds.length && !opts.disks) throw new DescriptorError(`domain ${domid} (${name}) has ${vbds.length} disk-family disk${vbds.length > 1 ? 's' : ''} (${vbds.map((v) => v.vdev).join(', ')}); this way of cloning does not freeze disks`);
  if (vbds.length && info.type === 'pv') throw new DescriptorError(`domain ${domid} (${name}) is a PV guest with disks: only PVH/HVM parents' disks are frozen`);
  const disks = vbds.length ? opts.disks!(vbds) : undefined;
  if (disks) {
    opts.progress?.(`preparing the freeze of ${vbds.map((v) => v.vdev).join(', ')}`);
    await disks.prepare();
  }
  const { nics, skipped } = readNics(xs, domid);
  for (const why of skipped) opts.progress?.(`clones will not get ${why}`);
  const version = xc.version();
  // Taken before the stop: the balloon target and libxl's record change only by the toolstack.
  const record = readParentRecord(xs, domid, info.uuid, info.maxPages);

  const started = Date.now();
  opts.progress?.(`suspending domain ${domid} (${name})`);
  await suspendDomain(xc, xs, domid);
  xc.pause(domid);
  let state;
  let imagePages: number | undefined;
  const imageId = opts.memoryImage ? newImageId() : undefined;
  let stopped = true;
  const resumeParent = () => {
    if (stopped) resumeSuspended(xc, xs, domid);
    stopped = false;
  };
  try {
    if (info.type === 'pv') {
      let pauseMs = 0;
      // The parent may run on once the stream is saved: cutting it up reads only the file.
      const pv = await capturePvStream(xc, domid, opts.memoryImage!, imageId!, opts.progress, () => {
        if (!opts.keepParentStopped) resumeParent();
        pauseMs = Date.now() - started;
      });
      if (opts.keepParentStopped) pauseMs = Date.now() - started;
      return { descriptor: pvDescriptor(info, name, devices, nics, version, imageId!, pv, pauseMs, record), pauseMs, imagePages: pv.pages, resumeParent };
    }
    if (disks) {
      opts.progress?.('freezing the disks');
      await disks.freeze();
    }
    state = await xc.captureState(domid);
    if (opts.memoryImage) {
      const pages = state.populated.reduce((n, [, c]) => n + c, 0);
      opts.progress?.(`writing ${Math.round((pages * 4) / 1024)} MiB memory image`);
      imagePages = await xc.writeMemoryImage(domid, state.populated, opts.memoryImage, imageHeader(imageId!, pages));
    }
  } catch (e) {
    resumeParent();
    throw e;
  }
  if (!opts.keepParentStopped) resumeParent();
  const pauseMs = Date.now() - started;
  const pages = state.populated.reduce((n, [, c]) => n + c, 0);
  const descriptor: Descriptor = {
    meta: {
      format: 'snowflock-descriptor',
      createdAt: new Date().toISOString(),
      source: { host: hostname(), domid, name, uuid: state.domain.uuid, type: state.domain.type as 'pvh' | 'hvm' },
      vm: {
        maxVcpus: state.maxVcpus,
        maxPages: state.maxPages,
        hap: state.hap,
        emulationFlags: state.emulationFlags,
        maxGpfn: state.maxGpfn,
        pagingPoolBytes: state.pagingPoolBytes,
      },
      tsc: { ...state.tsc, elapsedNsec: state.tsc.elapsedNsec.toString() },
      memory: { pages, ...(imageId ? { imageId } : {}), ...record.memory },
      devices,
      nics,
      ...(vbds.length ? { vbds } : {}),
      xen: { version: `${version.major}.${version.minor}${version.extra}` },
      ...(record.libxl ? { libxl: record.libxl } : {}),
      control: record.control,
      pauseMs,
    },
    hvmContext: state.hvmContext,
    params: state.params,
    cpuid: state.cpuid,
    msrs: state.msrs,
    memoryMap: state.populated,
    specialPages: state.special,
  };
  return { descriptor, pauseMs, imagePages, resumeParent };
}
