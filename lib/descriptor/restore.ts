// Starting a domain from a descriptor on this host. The addon builds it paused (and destroys
// it if any step fails); here it gets its xenstore home, is introduced to xenstored (the
// resuming kernel blocks until its xenstore watches are answered) and is unpaused.
import { randomUUID } from 'node:crypto';
import type { XenControl, XenStore, BuildResult } from '../xen/native.js';
import { removeDomainEntries, writeDomainEntries } from '../xen/domain-xenstore.js';
import { plugCloneNics, removeCloneNics, writeCloneNics } from '../xen/clone-nic.js';
import { cloneDomainConfig, nicScript, removeDomainConfig, writeDomainConfig, writeLibxlNicEntries } from '../xen/libxl-config.js';
import type { BlockTransport } from '../clone/disk-transport.js';
import { plugCloneDisks, unplugCloneDisks, type CloneDisksOptions, type DiskForkExport } from '../clone/fork-disks.js';
import { removeCloneVbds } from '../xen/clone-vbd.js';
import { DescriptorError } from './errors.js';
import { whoHoldsDomid } from './domain-uuid.js';
import { checkImage, IMAGE_HEADER_SIZE } from './memory-image.js';
import type { Descriptor } from './format.js';

export interface RestoreOptions {
  /** the full memory image to copy in; without one the pages stay zero for memtap to fill */
  memoryImage?: string;
  /** the clone's id within its family: 1..n (0 is the parent) */
  vmid: number;
  name: string;
  /** unpause when built (default true) */
  start?: boolean;
  /** MACs for the clone's vifs, in the descriptor's nics order (default: new random ones) */
  macs?: string[];
  /** keep the clone's vifs off their bridges until releaseCloneNics (see plugCloneNics) */
  holdNetwork?: boolean;
  /**
   * The fork's disk exports (with their keys) when the parent had disk-family disks
   * (meta.vbds): each becomes the clone's overlay over its slice, an nbd device and a vbd.
   */
  disks?: DiskForkExport[];
  /** where disk families live on this host, and how nbd-client is run (tests) */
  diskOptions?: CloneDisksOptions;
}

export interface Restored {
  domid: number;
  name: string;
  uuid: string;
  vmid: number;
  /** populate calls Xen cut short and the build continued (diagnostic) */
  partialPopulates: number;
  /** the new MACs of the clone's vifs, in the descriptor's nics order */
  macs: string[];
  /** milliseconds spent attaching the clone's disks (overlays, nbd devices, vbds); 0 without disks */
  diskAttachMs: number;
  /** how each of the clone's disks reads its fork's slice: the front, or mcdist (and why not, when asked for) */
  disks: { vdev: string; blocks: BlockTransport; fallback?: string }[];
}

/** A clone needs its pages plus a little for Xen's own structures (p2m, paging pool). */
function pagesNeeded(d: Descriptor): number {
  return d.meta.memory.pages + Math.ceil(d.meta.vm.pagingPoolBytes / 4096) + 256;
}

/**
 * The clone's memory/static-max and target: the parent's at the fork. Older descriptors lack
 * them: Xen's limit less libxl's 1 MiB slack (LIBXL_MAXMEM_CONSTANT), as libxl sets it.
 */
export function cloneMemoryKiB(d: Descriptor): { staticMaxKiB: number; targetKiB: number } {
  const { staticMaxKiB, targetKiB } = d.meta.memory;
  if (staticMaxKiB !== undefined && targetKiB !== undefined) return { staticMaxKiB, targetKiB };
  const maxKiB = d.meta.vm.maxPages * 4;
  const limit = maxKiB > 2048 ? maxKiB - 1024 : maxKiB;
  return { staticMaxKiB: limit, targetKiB: limit };
}

export function uuidBytes(uuid: string): Buffer {
  return Buffer.from(uuid.replaceAll('-', ''), 'hex');
}

export async function restoreDescriptor(xc: XenControl, xs: XenStore, d: Descriptor, opts: RestoreOptions): Promise<Restored> {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(opts.name)) throw new DescriptorError(`bad domain name "${opts.name}"`);
  if (xc.listDomains().some((dom) => xs.read(`/local/domain/${dom.domid}/name`) === opts.name)) {
    throw new DescriptorError(`a domain named ${opts.name} already exists`);
  }
  const free = xc.physinfo().freePages;
  const need = pagesNeeded(d);
  if (free < need) {
    throw new DescriptorError(`not enough free memory on this host: the clone needs ${Math.ceil((need * 4) / 1024)} MiB, Xen has ${Math.floor((free * 4) / 1024)} MiB free`);
  }
  const pv = d.meta.source.type === 'pv';
  if (pv && !opts.memoryImage) throw new DescriptorError('a PV descriptor restores only with its memory image (PV clones are eager)');
  const vbds = d.meta.vbds ?? [];
  if (vbds.length && !opts.disks) {
    throw new DescriptorError(`the parent had disks (${vbds.map((v) => `${v.vdev}: ${v.family}:${v.vm}/${v.disk}`).join(', ')}) and this restore was given no fork export of them`);
  }
  if (opts.memoryImage) checkImage(opts.memoryImage, d.meta.memory.imageId, d.meta.memory.pages, d.meta.memory.imageBytes);

  const uuid = randomUUID();
  const built: BuildResult = pv ? await xc.restorePvStream({
    handle: uuidBytes(uuid),
    maxVcpus: d.meta.vm.maxVcpus,
    maxPages: d.meta.vm.maxPages,
    head: d.pvStream!.head,
    tail: d.pvStream!.tail,
    image: opts.memoryImage!,
    imageOffset: IMAGE_HEADER_SIZE,
    imageLength: d.meta.memory.imageBytes!,
  }) : await xc.buildDomain({
    handle: uuidBytes(uuid),
    hap: d.meta.vm.hap,
    maxVcpus: d.meta.vm.maxVcpus,
    emulationFlags: d.meta.vm.emulationFlags,
    maxPages: d.meta.vm.maxPages,
    pagingPoolBytes: d.meta.vm.pagingPoolBytes,
    tsc: { ...d.meta.tsc, elapsedNsec: BigInt(d.meta.tsc.elapsedNsec) },
    cpuid: d.cpuid,
    msrs: d.msrs,
    hvmContext: d.hvmContext,
    params: d.params,
    populated: d.memoryMap,
    special: d.specialPages,
    ...(opts.memoryImage ? { memoryImage: opts.memoryImage, imageOffset: IMAGE_HEADER_SIZE } : {}),
  });
  let macs: string[] = [];
  let diskAttachMs = 0;
  let disks: Restored['disks'] = [];
  const memory = cloneMemoryKiB(d);
  try {
    writeDomainEntries(xs, {
      domid: built.domid,
      name: opts.name,
      uuid,
      type: d.meta.source.type,
      ...memory,
      vcpus: d.meta.vm.maxVcpus,
      storeGfn: built.storeGfn,
      storePort: built.storePort,
      consoleGfn: built.consoleGfn,
      consolePort: built.consolePort,
      snowflock: { vmid: String(opts.vmid), parent: d.meta.source.uuid, 'parent-name': d.meta.source.name },
      control: d.meta.control,
    });
    const nics = d.meta.nics ?? [];
    const scripts = nics.map((nic) => nicScript(d.meta.libxl, nic.devid));
    macs = writeCloneNics(xs, built.domid, nics, { scripts, ...(opts.macs ? { macs: opts.macs } : {}) });
    // libxl's record of the clone, so that xl treats it as a domain of its own (libxl-config.ts).
    nics.forEach((nic, i) => writeLibxlNicEntries(xs, built.domid, nic, macs[i]!, scripts[i]!));
    writeDomainConfig(built.domid, uuid, cloneDomainConfig(d.meta.libxl, {
      name: opts.name, uuid, type: d.meta.source.type, vcpus: d.meta.vm.maxVcpus, ...memory,
      nics: nics.map((nic, i) => ({ nic, mac: macs[i]! })),
    }));
    // Disks before the clone is introduced and unpaused: its blkfront reconnects on resume.
    if (vbds.length) {
      const t0 = Date.now();
      const attached = await plugCloneDisks(xs, built.domid, opts.name, vbds, opts.disks!, opts.diskOptions ?? {});
      disks = attached.map((a) => ({ vdev: a.record.vdev, blocks: a.blocks, ...(a.fallback ? { fallback: a.fallback } : {}) }));
      diskAttachMs = Date.now() - t0;
    }
    xs.introduceDomain(built.domid, built.storeGfn, built.storePort);
    await plugCloneNics(xs, built.domid, nics, { hold: opts.holdNetwork === true });
    if (opts.start !== false) xc.unpause(built.domid);
  } catch (e) {
    await destroyClone(xc, xs, built.domid, uuid, opts.diskOptions).catch((x: Error) => {
      if (e instanceof Error) e.message += ` (and cleaning up failed: ${x.message})`;
    });
    throw e;
  }
  return { domid: built.domid, name: opts.name, uuid, vmid: opts.vmid, partialPopulates: built.partialPopulates, macs, diskAttachMs, disks };
}

/**
 * Destroys a clone and everything snowflock made for it (its vbds, nbd connections and disk
 * overlays too); idempotent. Throws, after doing the rest, when a disk could not be let go.
 */
export async function destroyClone(xc: XenControl, xs: XenStore, domid: number, uuid?: string, diskOptions: CloneDisksOptions = {}): Promise<void> {
  if (uuid !== undefined && whoHoldsDomid(xc, domid, uuid) === 'another') {
    // The clone is gone and its domid is another domain's now: only what is named by uuid is ours.
    xs.rm(`/vm/${uuid}`);
    removeDomainConfig(domid, uuid);
    return;
  }
  try {
    await xc.destroy(domid);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ESRCH') throw e;
  }
  try {
    xs.releaseDomain(domid);
  } catch {
    /* xenstored already forgot a dead domain */
  }
  removeCloneNics(xs, domid);
  let diskLeft: string[] = [];
  try {
    diskLeft = await unplugCloneDisks(xs, domid, diskOptions);
  } catch (e) {
    removeCloneVbds(xs, domid);
    diskLeft = [(e as Error).message];
  }
  removeDomainEntries(xs, domid, uuid);
  if (uuid) removeDomainConfig(domid, uuid);
  if (diskLeft.length) throw new DescriptorError(`domain ${domid} is destroyed, but its disks were not all let go: ${diskLeft.join('; ')}`);
}
