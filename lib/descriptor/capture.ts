// Taking a descriptor (and, for eager clones, a full memory image) from a running PVH/HVM
// guest. The parent is stopped only between its cooperative suspend and the end of the
// copy, then carries on through the fast resume path.
import { hostname } from 'node:os';
import type { XenControl, XenStore } from '../xen/native.js';
import { suspendDomain, resumeSuspended } from '../xen/suspend.js';
import { listDevices, domainPath } from '../xen/domain-xenstore.js';
import { readNics } from '../xen/clone-nic.js';
import { DescriptorError } from './errors.js';
import { imageHeader, newImageId } from './memory-image.js';
import type { Descriptor } from './format.js';

export interface CaptureOptions {
  /** write a full memory image here while the parent is suspended */
  memoryImage?: string;
  /**
   * Leave the parent suspended and paused; the caller resumes it with result.resumeParent()
   * once its clones are built, so the family starts together.
   */
  keepParentStopped?: boolean;
  progress?: (message: string) => void;
}

export interface CaptureResult {
  descriptor: Descriptor;
  /** from suspend request to parent running again (to the end of capture when kept stopped) */
  pauseMs: number;
  imagePages?: number;
  /** resumes a parent kept stopped; a no-op otherwise, and idempotent */
  resumeParent: () => void;
}

export async function captureDescriptor(xc: XenControl, xs: XenStore, domid: number, opts: CaptureOptions = {}): Promise<CaptureResult> {
  const info = xc.domainInfo(domid); // ESRCH names an unknown domain
  if (domid === 0) throw new DescriptorError('domain 0 cannot be cloned');
  if (info.type === 'pv') throw new DescriptorError(`domain ${domid} is a PV guest: descriptors support PVH and HVM guests (PV is not implemented yet)`);
  if (info.dying || (info.shutdownReason && info.shutdownReason !== 'suspend')) {
    throw new DescriptorError(`domain ${domid} is ${info.dying ? 'dying' : `shut down (${info.shutdownReason})`}`);
  }
  const name = xs.read(`${domainPath(domid)}/name`) ?? `domain-${domid}`;
  const devices = listDevices(xs, domid);
  const { nics, skipped } = readNics(xs, domid);
  for (const why of skipped) opts.progress?.(`clones will not get ${why}`);
  const version = xc.version();

  const started = Date.now();
  opts.progress?.(`suspending domain ${domid} (${name})`);
  await suspendDomain(xc, xs, domid);
  xc.pause(domid);
  let state;
  let imagePages: number | undefined;
  const imageId = opts.memoryImage ? newImageId() : undefined;
  let stopped = true;
  const resumeParent = () => {
    if (stopped) resumeSuspended(xc, domid);
    stopped = false;
  };
  try {
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
      memory: { pages, ...(imageId ? { imageId } : {}) },
      devices,
      nics,
      xen: { version: `${version.major}.${version.minor}${version.extra}` },
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
