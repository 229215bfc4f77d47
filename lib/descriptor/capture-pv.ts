// Capture of a PV guest, suspended and paused by captureDescriptor: libxenguest saves its
// stream (page tables and p2m canonicalised to pseudo-physical frames), whose page data
// becomes the memory image and the rest the descriptor (pv-stream.ts). Always eager: memory
// on demand needs HAP, which PV domains never have.
import { hostname } from 'node:os';
import { rmSync } from 'node:fs';
import type { DomainInfo, XenControl, XenVersionInfo } from '../xen/native.js';
import type { NicRecord } from '../xen/clone-nic.js';
import type { Descriptor } from './format.js';
import { imageHeader } from './memory-image.js';
import { splitPvStream, type SplitStream } from './pv-stream.js';
import type { ParentRecord } from './parent-record.js';

/** Saves the stream, calls `saved` (the parent is no longer needed), then cuts the stream up. */
export async function capturePvStream(xc: XenControl, domid: number, imagePath: string, imageId: string,
  progress: ((message: string) => void) | undefined, saved: () => void): Promise<SplitStream> {
  const streamPath = `${imagePath}.stream`;
  try {
    progress?.('saving the PV migration stream');
    await xc.savePvStream(domid, streamPath);
    saved();
    return await splitPvStream(streamPath, imagePath, (pages) => imageHeader(imageId, pages));
  } finally {
    rmSync(streamPath, { force: true });
  }
}

export function pvDescriptor(info: DomainInfo, name: string, devices: Record<string, string[]>, nics: NicRecord[],
  version: XenVersionInfo, imageId: string, pv: SplitStream, pauseMs: number, record: ParentRecord): Descriptor {
  return {
    meta: {
      format: 'snowflock-descriptor',
      createdAt: new Date().toISOString(),
      source: { host: hostname(), domid: info.domid, name, uuid: info.uuid, type: 'pv' },
      // The stream carries the CPU policy, TSC and vCPU state; these describe the domain to build.
      vm: { maxVcpus: info.maxVcpuId + 1, maxPages: info.maxPages, hap: false, emulationFlags: 0, maxGpfn: 0, pagingPoolBytes: 0 },
      tsc: { mode: 0, elapsedNsec: '0', gtscKhz: 0, incarnation: 0 },
      memory: { pages: pv.pages, imageId, imageBytes: pv.imageBytes, ...record.memory },
      devices,
      nics,
      xen: { version: `${version.major}.${version.minor}${version.extra}` },
      ...(record.libxl ? { libxl: record.libxl } : {}),
      control: record.control,
      pauseMs,
    },
    hvmContext: Buffer.alloc(0),
    params: [],
    cpuid: Buffer.alloc(0),
    msrs: Buffer.alloc(0),
    memoryMap: [],
    specialPages: [],
    pvStream: { head: pv.head, tail: pv.tail },
  };
}
