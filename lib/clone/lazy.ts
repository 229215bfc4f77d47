// Clones with memory on demand. The parent is stopped only while its descriptor and an
// immutable copy of its memory are taken (then it runs on); a memserver serves that copy;
// each clone is built with its pages out and a memtap fetches what it touches.
// Memserver and memtaps are detached processes: they outlive this call, and end with the
// clones (a memtap when its domain is gone, the memserver when every clone said goodbye).
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { MemtapBackend, XenControl, XenStore } from '../xen/native.js';
import { restoreDescriptor, destroyClone, type Restored } from '../descriptor/restore.js';
import type { Descriptor } from '../descriptor/format.js';
import { domainName } from '../xen/resolve.js';
import { cloneName } from './names.js';
import { spawnDetached } from '../memtap/spawn.js';
import { captureFork } from './capture-fork.js';
import { releaseForkDisks, type CloneDisksOptions, type DiskForkExport, type ForkDisksOptions } from './fork-disks.js';

export const DEFAULT_STATE_DIR = process.env.SNOWFLOCK_STATE ?? '/var/lib/snowflock';

export interface LazyRestoreOptions {
  vmid: number;
  name: string;
  /** the memserver holding the parent's memory */
  server: { host: string; port: number };
  tokenFile: string;
  logDir: string;
  prefetch?: number;
  /** zero-fill pages the clone reports free (default true) */
  heuristics?: boolean;
  /** hold neighbour prefetch until the clone's free-page report is applied, at most this long (default 0) */
  freeReportWaitMs?: number;
  backend?: MemtapBackend;
  /** unpause when ready (default true) */
  start?: boolean;
  /** MACs for the clone's vifs (restoreDescriptor) */
  macs?: string[];
  /** keep the clone's vifs off their bridges until releaseCloneNics (RestoreOptions.holdNetwork) */
  holdNetwork?: boolean;
  /** the fork's disk exports, keys included (a parent with disk-family disks: RestoreOptions.disks) */
  disks?: DiskForkExport[];
  /** how this host attaches them (RestoreOptions.diskOptions: e.g. the address mcdist joins on) */
  diskOptions?: CloneDisksOptions;
}

export interface LazyClone extends Restored {
  memtapPid: number;
  memtapLog: string;
  /** build + page-out, until ready to run */
  buildMs: number;
  evicted: number;
  eager: number;
  evictMs: number;
}

/** Builds one clone with its memory out and starts its memtap (used on any host). */
export async function restoreLazy(xc: XenControl, xs: XenStore, d: Descriptor, o: LazyRestoreOptions): Promise<LazyClone> {
  const t0 = Date.now();
  const r = await restoreDescriptor(xc, xs, d, {
    vmid: o.vmid, name: o.name, start: false, ...(o.macs ? { macs: o.macs } : {}), holdNetwork: o.holdNetwork === true, ...(o.disks?.length ? { disks: o.disks } : {}),
    ...(o.diskOptions ? { diskOptions: o.diskOptions } : {}),
  });
  const memtapLog = join(o.logDir, `memtap-${r.domid}.log`);
  try {
    const options = {
      domid: r.domid, host: o.server.host, port: o.server.port, tokenFile: o.tokenFile, vmid: o.vmid,
      prefetch: o.prefetch, heuristics: o.heuristics, freeReportWaitMs: o.freeReportWaitMs, backend: o.backend,
    };
    const tap = await spawnDetached({ role: 'memtap', options }, memtapLog, 'ready', 300_000);
    const e = tap.event as { evicted: number; eager: number; evictMs: number };
    if (o.start !== false) xc.unpause(r.domid);
    return { ...r, memtapPid: tap.pid, memtapLog, buildMs: Date.now() - t0, evicted: e.evicted, eager: e.eager, evictMs: e.evictMs };
  } catch (e) {
    await destroyClone(xc, xs, r.domid, r.uuid);
    throw e;
  }
}

export interface LazyCloneOptions {
  count: number;
  stateDir?: string;
  prefetch?: number;
  heuristics?: boolean;
  freeReportWaitMs?: number;
  backend?: MemtapBackend;
  /** address the memserver listens on (clones on other hosts connect to it) */
  listenHost?: string;
  progress?: (message: string) => void;
  /** how the fork's disk blocks reach the clones (ForkDisksOptions.blocks) */
  diskOptions?: ForkDisksOptions;
}

export interface LazyCloneResult {
  family: string;
  dir: string;
  parent: { domid: number; name: string };
  clones: LazyClone[];
  /** from the suspend request until the parent runs again */
  pauseMs: number;
  descriptorBytes: number;
  imagePages: number;
  memserver: { pid: number; port: number; log: string; evictPages: number; zeroPages: number; eagerPages: number };
}

export async function cloneLazy(xc: XenControl, xs: XenStore, domid: number, o: LazyCloneOptions): Promise<LazyCloneResult> {
  if (!Number.isInteger(o.count) || o.count < 1 || o.count > 64) throw new RangeError(`clone count must be 1..64, got ${o.count}`);
  const parentName = domainName(xs, domid);
  const family = randomBytes(3).toString('hex');
  const dir = join(o.stateDir ?? DEFAULT_STATE_DIR, 'families', family);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let serverPid: number | undefined;
  let disks: DiskForkExport[] = [];
  const clones: LazyClone[] = [];
  try {
    // The parent runs on as soon as its memory is copied: the copy is what clones see.
    const { captured, encoded, tokenFile, memserver: server, disks: exported } = await captureFork(xc, xs, domid, {
      dir, clones: o.count, fork: family, ...(o.diskOptions ? { diskOptions: o.diskOptions } : {}), ...(o.listenHost ? { listenHost: o.listenHost } : {}), ...(o.progress ? { progress: o.progress } : {}),
    });
    serverPid = server.pid;
    disks = exported;
    const ev = server.event as { port: number; evictPages: number; zeroPages: number; eagerPages: number };
    for (let vmid = 1; vmid <= o.count; vmid++) {
      o.progress?.(`building clone ${vmid}/${o.count} with its memory on demand`);
      clones.push(
        await restoreLazy(xc, xs, captured.descriptor, {
          vmid,
          name: cloneName(parentName, family, vmid),
          server: { host: '127.0.0.1', port: ev.port },
          tokenFile,
          logDir: dir,
          prefetch: o.prefetch,
          heuristics: o.heuristics,
          freeReportWaitMs: o.freeReportWaitMs,
          backend: o.backend,
          start: false,
          disks,
        }),
      );
    }
    // Siblings start together.
    for (const c of clones) xc.unpause(c.domid);
    return {
      family,
      dir,
      parent: { domid, name: parentName },
      clones,
      pauseMs: captured.pauseMs,
      descriptorBytes: encoded.length,
      imagePages: captured.imagePages ?? 0,
      memserver: { pid: server.pid, port: ev.port, log: server.log, evictPages: ev.evictPages, zeroPages: ev.zeroPages, eagerPages: ev.eagerPages },
    };
  } catch (e) {
    for (const c of clones) await destroyClone(xc, xs, c.domid, c.uuid).catch(() => undefined);
    if (disks.length) await releaseForkDisks(disks).catch(() => undefined);
    if (serverPid) {
      try {
        process.kill(serverPid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
