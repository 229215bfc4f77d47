// Eager clones on one host: descriptor + full memory image + K restores. This is the
// suspend/resume-style baseline that memory on demand (memtap) must beat.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { XenControl, XenStore } from '../xen/native.js';
import { captureDescriptor } from '../descriptor/capture.js';
import { restoreDescriptor, destroyClone, type Restored } from '../descriptor/restore.js';
import { domainName } from '../xen/resolve.js';
import { cloneName } from './names.js';
import { encodeDescriptor } from '../descriptor/format.js';
import { randomBytes } from 'node:crypto';

export interface EagerCloneOptions {
  count: number;
  workdir: string;
  progress?: (message: string) => void;
}

export interface EagerCloneResult {
  parent: { domid: number; name: string };
  clones: (Restored & { buildMs: number })[];
  pauseMs: number;
  descriptorBytes: number;
  imagePages: number;
}

export async function cloneEager(xc: XenControl, xs: XenStore, domid: number, opts: EagerCloneOptions): Promise<EagerCloneResult> {
  if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > 64) throw new RangeError(`clone count must be 1..64, got ${opts.count}`);
  mkdirSync(opts.workdir, { recursive: true });
  const parentName = domainName(xs, domid);
  const image = join(opts.workdir, `${parentName}-${process.pid}-${Date.now()}.mem`);
  const clones: (Restored & { buildMs: number })[] = [];
  // Names are unique per clone operation: <parent>-<family>-<vmid>.
  const family = randomBytes(2).toString('hex');
  try {
    // The family starts together: the parent stays suspended and the clones paused until
    // every clone is built, so no clone sees a sibling's half-built state and the pause is one.
    const t0 = Date.now();
    const captured = await captureDescriptor(xc, xs, domid, { memoryImage: image, progress: opts.progress, keepParentStopped: true });
    try {
      for (let vmid = 1; vmid <= opts.count; vmid++) {
        const t1 = Date.now();
        opts.progress?.(`building clone ${vmid}/${opts.count}`);
        const r = await restoreDescriptor(xc, xs, captured.descriptor, { memoryImage: image, vmid, name: cloneName(parentName, family, vmid), start: false });
        clones.push({ ...r, buildMs: Date.now() - t1 });
      }
    } finally {
      captured.resumeParent();
    }
    const pauseMs = Date.now() - t0;
    for (const c of clones) xc.unpause(c.domid);
    const descriptorBytes = encodeDescriptor(captured.descriptor).length;
    return { parent: { domid, name: parentName }, clones, pauseMs, descriptorBytes, imagePages: captured.imagePages ?? 0 };
  } catch (e) {
    for (const c of clones) await destroyClone(xc, xs, c.domid, c.uuid);
    throw e;
  } finally {
    rmSync(image, { force: true });
  }
}
