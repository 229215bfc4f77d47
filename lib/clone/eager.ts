// Eager clones on one host: descriptor + full memory image + K restores. This is the
// suspend/resume-style baseline that memory on demand (memtap) must beat.
import { lstatSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { XenControl, XenStore } from '../xen/native.js';
import { captureDescriptor } from '../descriptor/capture.js';
import { restoreDescriptor, destroyClone, type Restored } from '../descriptor/restore.js';
import { domainName } from '../xen/resolve.js';
import { cloneName } from './names.js';
import { encodeDescriptor } from '../descriptor/format.js';
import { randomBytes } from 'node:crypto';
import { ForkDisks, type DiskForkExport, type ForkDisksOptions } from './fork-disks.js';
import { abandonDisks } from './capture-fork.js';

export interface EagerCloneOptions {
  count: number;
  /** under which a private directory for the memory image is made; default the system's temporary directory */
  workdir?: string;
  progress?: (message: string) => void;
  /** where disk families live on this host (a parent with disk-family disks) */
  diskOptions?: ForkDisksOptions;
}

export interface EagerCloneResult {
  parent: { domid: number; name: string };
  clones: (Restored & { buildMs: number })[];
  pauseMs: number;
  descriptorBytes: number;
  imagePages: number;
  /** the fork's disk exports (parents with disks): release them with releaseForkDisks once the clones are gone */
  disks: DiskForkExport[];
  /** the fork's name for its disk slices */
  fork: string;
  /**
   * milliseconds spent in the fork's disk steps (all 0 for a parent without disks): the freeze
   * prepared while the parent ran, the freeze and the slices' export while it was stopped, and
   * the clones' disk attaches (summed over the clones, also while it was stopped)
   */
  diskMs: { prepare: number; freeze: number; export: number; attach: number };
}

export class WorkdirError extends Error {}

/**
 * A new private (0700) directory for an eager clone's memory image, the guest's whole memory:
 * made by mkdtemp (a fresh random name, so nothing can be planted there first) under `parent`,
 * or under the system's temporary directory. A given parent must be a real directory (not a
 * symbolic link) owned by this user or root that no one else can write to, or a sticky one like
 * /tmp, so that no one else can move the private directory away. The caller removes it.
 */
export function eagerWorkdir(parent?: string): string {
  const base = parent ?? tmpdir();
  if (parent !== undefined) {
    mkdirSync(parent, { recursive: true, mode: 0o700 });
    const st = lstatSync(parent);
    if (st.isSymbolicLink()) throw new WorkdirError(`work directory ${parent} is a symbolic link: give the directory it points to, if that is meant`);
    if (!st.isDirectory()) throw new WorkdirError(`work directory ${parent} is not a directory`);
    const me = process.geteuid?.() ?? 0;
    if (st.uid !== me && st.uid !== 0) throw new WorkdirError(`work directory ${parent} belongs to user ${st.uid}, not to this user`);
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) throw new WorkdirError(`others can write to work directory ${parent} and it is not sticky: they could replace the memory image's directory`);
  }
  return mkdtempSync(join(base, 'snowflock-eager-'));
}

export async function cloneEager(xc: XenControl, xs: XenStore, domid: number, opts: EagerCloneOptions): Promise<EagerCloneResult> {
  if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > 64) throw new RangeError(`clone count must be 1..64, got ${opts.count}`);
  const parentName = domainName(xs, domid);
  const workdir = eagerWorkdir(opts.workdir);
  const image = join(workdir, `${parentName}.mem`);
  const clones: (Restored & { buildMs: number })[] = [];
  // Names are unique per clone operation: <parent>-<family>-<vmid>.
  const family = randomBytes(2).toString('hex');
  const fork = `eager-${family}`;
  let forkDisks: ForkDisks | undefined;
  let disks: DiskForkExport[] = [];
  try {
    // The family starts together: the parent stays suspended and the clones paused until
    // every clone is built, so no clone sees a sibling's half-built state and the pause is one.
    const t0 = Date.now();
    const captured = await captureDescriptor(xc, xs, domid, {
      memoryImage: image, progress: opts.progress, keepParentStopped: true,
      disks: (vbds) => (forkDisks = new ForkDisks(fork, vbds, { ...opts.diskOptions, ...(opts.progress ? { log: opts.progress } : {}) })),
    });
    try {
      // The clones are built before the parent runs on, so the slices are exported while it is stopped.
      if (forkDisks) {
        disks = await forkDisks.exportAll('127.0.0.1');
        forkDisks.close();
      }
      for (let vmid = 1; vmid <= opts.count; vmid++) {
        const t1 = Date.now();
        opts.progress?.(`building clone ${vmid}/${opts.count}`);
        const r = await restoreDescriptor(xc, xs, captured.descriptor, {
          memoryImage: image, vmid, name: cloneName(parentName, family, vmid), start: false,
          ...(disks.length ? { disks, ...(opts.diskOptions ? { diskOptions: opts.diskOptions } : {}) } : {}),
        });
        clones.push({ ...r, buildMs: Date.now() - t1 });
      }
    } finally {
      captured.resumeParent();
    }
    const pauseMs = Date.now() - t0;
    for (const c of clones) xc.unpause(c.domid);
    const descriptorBytes = encodeDescriptor(captured.descriptor).length;
    const diskMs = { prepare: 0, freeze: 0, export: 0, ...forkDisks?.ms, attach: clones.reduce((n, c) => n + c.diskAttachMs, 0) };
    return { parent: { domid, name: parentName }, clones, pauseMs, descriptorBytes, imagePages: captured.imagePages ?? 0, disks, fork, diskMs };
  } catch (e) {
    for (const c of clones) await destroyClone(xc, xs, c.domid, c.uuid, opts.diskOptions).catch(() => undefined);
    throw await abandonDisks(forkDisks, e);
  } finally {
    rmSync(workdir, { recursive: true, force: true });
  }
}
