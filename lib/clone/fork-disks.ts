// A fork's disks, end to end (docs/disks.md "The Xen side"). On the parent's host: the
// parent's family disks are prepared for a freeze while it runs, frozen while it is suspended,
// and exported to the fork's clones once it has resumed (one front per family, each with a key
// of its own); a fork that fails takes all of that back. On a clone's host: each disk becomes
// an overlay over its slice, connected to /dev/nbdN and written as the clone's vbd before it
// runs; when the clone ends, the vbd, the nbd connection and the overlay go.
import type { XenStore } from '../xen/native.js';
import { useFamily, type FamilyOptions } from '../disk/use-family.js';
import { DiskError } from '../disk/errors.js';
import { checkPsk, type Psk } from '../disk/psk.js';
import { attachNbd, detachNbd, type NbdAttachment, type NbdHost } from '../disk/nbd-attach.js';
import { readCloneVbdBackends, removeCloneVbds, waitVbdsClosed, writeCloneVbds, type CloneVbd, type VbdRecord } from '../xen/clone-vbd.js';
import type { SliceSession } from '../disk/mcdist-backing.js';
import { releaseBackings } from '../disk/shared-backings.js';
import { startSliceServers } from '../disk/slice-servers.js';
import { defaultMcdistWorker } from '../disk/detached-worker.js';
import { checkSliceSessions, mcdistSocketFor, type BlockTransport, type DiskTransportUsed, type McdistDiskOptions } from './disk-transport.js';

/** One family's part of a fork: where its front listens, the fork's key for it, what it exports. */
export interface DiskForkExport {
  family: string;
  fork: string;
  host: string;
  port: number;
  psk: Psk;
  exports: { vm: string; disk: string; name: string; sizeBytes: number }[];
  /** the mcdist sessions of the disks served over mcdist (`blocks: 'mcdist'`); they hold keys, so they travel sealed with `psk` */
  mcdist?: SliceSession[];
  /** which transport each disk is served by on the parent's host, and why a disk asked for over mcdist is not (no keys) */
  blocks?: DiskTransportUsed[];
}

/** The same without the keys: what may travel in clear in a fork image (the keys are sealed apart). */
export type DiskForkAddress = Omit<DiskForkExport, 'psk' | 'mcdist'>;

/** where disk families live on this host (useFamily), and how the fork's blocks reach the clones */
export interface ForkDisksOptions extends FamilyOptions {
  /** 'front' (default): every clone host reads the fork's TLS front; 'mcdist': slice servers as well, clone hosts join them and fall back to the front */
  blocks?: BlockTransport;
  mcdist?: McdistDiskOptions;
}

/**
 * The parent's side of one fork's disks. prepare() before the suspend, freeze() while the
 * parent is stopped, exportAll() after; abandon() on any failure leaves no overlay, slice
 * export or front behind (a freeze that happened leaves the parent on its new layer, with the
 * slice released).
 */
export class ForkDisks {
  private readonly exported: DiskForkExport[] = [];
  /** milliseconds spent so far in each step (a fork's timing record) */
  readonly ms = { prepare: 0, freeze: 0, export: 0 };

  constructor(
    readonly fork: string,
    readonly vbds: VbdRecord[],
    private readonly o: ForkDisksOptions = {},
  ) {}

  private byFamily(): Map<string, VbdRecord[]> {
    const m = new Map<string, VbdRecord[]>();
    for (const v of this.vbds) m.set(v.family, [...(m.get(v.family) ?? []), v]);
    return m;
  }

  /**
   * Makes the new overlays while the parent still runs. The prepared overlays live in the
   * family's handle, which stays open (held) until freeze(), abandon() or close().
   */
  prepare(): Promise<void> {
    return this.timed('prepare', async () => {
      for (const [name, vbds] of this.byFamily()) {
        await this.hold(name);
        await useFamily(name, this.o, (f) => f.prepareFreeze({ fork: this.fork, vm: vbds[0]!.vm, disks: vbds.map((v) => v.disk) }));
      }
    });
  }

  /** Freezes every disk of the parent (stopped by the caller); the old layers become the fork's slices. */
  freeze(): Promise<void> {
    return this.timed('freeze', async () => {
      for (const [name, vbds] of this.byFamily()) {
        await useFamily(name, this.o, (f) => f.freeze({ fork: this.fork, vm: vbds[0]!.vm, disks: vbds.map((v) => v.disk) }).then(() => undefined));
      }
    });
  }

  /**
   * Starts each family's front for this fork on `host` (its port chosen by the kernel), and
   * with `blocks: 'mcdist'` a slice server per disk beside it (released with the front).
   */
  exportAll(host: string): Promise<DiskForkExport[]> {
    return this.timed('export', async () => {
      for (const name of this.byFamily().keys()) {
        const e = await useFamily(name, this.o, async (f) => {
          const front = await f.exportFork({ fork: this.fork, host });
          if (this.o.blocks !== 'mcdist') return front;
          const served = await startSliceServers({
            familyDir: f.dir, nbdSocket: f.nbdSocket, fork: this.fork, host, slices: front.exports,
            script: this.o.mcdist?.worker ?? defaultMcdistWorker(), ...(this.o.log ? { log: this.o.log } : {}),
          });
          return {
            ...front,
            mcdist: served.flatMap((x) => (x.session ? [x.session] : [])),
            blocks: served.map((x) => ({ vm: x.vm, disk: x.disk, blocks: x.session ? 'mcdist' as const : 'front' as const, ...(x.fallback ? { fallback: x.fallback } : {}) })),
          };
        });
        this.exported.push({ family: name, ...e });
      }
      return structuredClone(this.exported);
    });
  }

  private async timed<T>(step: keyof ForkDisks['ms'], body: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      return await body();
    } finally {
      this.ms[step] += Date.now() - t0;
    }
  }

  /** Takes everything back (idempotent): fronts and slice exports, or a prepared freeze. */
  async abandon(): Promise<string[]> {
    const left: string[] = [];
    for (const name of this.byFamily().keys()) {
      try {
        // Either may apply when a freeze of several families stopped part way: a family not
        // frozen yet still holds its prepared overlays, a frozen one has its slices exported.
        await useFamily(name, this.o, async (f) => {
          await f.abandonFreeze(this.fork);
          if (f.slices(this.fork).some((s) => !s.released)) await f.releaseFork(this.fork);
        });
      } catch (e) {
        left.push(`family ${name}: ${(e as Error).message}`);
      }
    }
    this.close();
    return left;
  }

  /** Handles held from prepare() on, so that a prepared freeze is not lost with its handle. */
  private readonly held = new Map<string, () => void>();

  private async hold(name: string): Promise<void> {
    if (this.held.has(name)) return;
    let opened!: () => void;
    const ready = new Promise<void>((r) => (opened = r));
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    const using = useFamily(name, this.o, async () => {
      opened();
      await done;
    });
    await Promise.race([ready, using]);
    this.held.set(name, release);
  }

  /** Lets go of the families' handles (after exportAll, or abandon). */
  close(): void {
    for (const release of this.held.values()) release();
    this.held.clear();
  }
}

/** Ends a fork's disk exports on this host (the fork's last clone is gone, or the fork failed). */
export async function releaseForkDisks(exports: DiskForkAddress[], o: ForkDisksOptions = {}): Promise<void> {
  for (const e of exports) {
    await useFamily(e.family, o, async (f) => {
      if (f.slices(e.fork).some((s) => !s.released)) await f.releaseFork(e.fork);
    });
  }
}

/** Checks a fork's disk record as it arrives (it crossed the network); throws naming what is wrong. */
export function checkDiskForkExports(value: unknown, what: string): DiskForkAddress[] {
  if (!Array.isArray(value)) throw new Error(`${what}: disks is not a list`);
  return value.map((v, i) => {
    const e = v as Partial<DiskForkAddress>;
    const name = /^[A-Za-z0-9][\w.-]{0,63}$/;
    if (typeof e.family !== 'string' || !name.test(e.family)) throw new Error(`${what}: disk export ${i}: bad family`);
    if (typeof e.fork !== 'string' || !name.test(e.fork)) throw new Error(`${what}: disk export ${i}: bad fork`);
    if (typeof e.host !== 'string' || !/^[\w.:-]{1,253}$/.test(e.host)) throw new Error(`${what}: disk export ${i}: bad host`);
    if (!Number.isInteger(e.port) || e.port! < 1 || e.port! > 65535) throw new Error(`${what}: disk export ${i}: bad port`);
    if (!Array.isArray(e.exports) || !e.exports.every((x) => x && name.test(String(x.vm)) && name.test(String(x.disk)) && typeof x.name === 'string' && Number.isInteger(x.sizeBytes))) {
      throw new Error(`${what}: disk export ${i}: bad exports`);
    }
    return { family: e.family, fork: e.fork, host: e.host, port: e.port!, exports: e.exports.map((x) => ({ vm: x.vm, disk: x.disk, name: x.name, sizeBytes: x.sizeBytes })) };
  });
}

/** The keys of a fork's exports as one secret (sealed apart from the addresses), and back. */
export function diskKeysSecret(exports: DiskForkExport[]): Buffer {
  return Buffer.from(JSON.stringify(exports.map((e) => ({ family: e.family, identity: e.psk.identity, key: e.psk.key, ...(e.mcdist?.length ? { mcdist: e.mcdist } : {}) }))), 'utf8');
}

export function withDiskKeys(addresses: DiskForkAddress[], secret: Buffer): DiskForkExport[] {
  let keys: { family: string; identity: string; key: string; mcdist?: unknown }[];
  try {
    keys = JSON.parse(secret.toString('utf8'));
  } catch {
    throw new Error('fork image: the disks\' keys are not JSON');
  }
  return addresses.map((a) => {
    const k = Array.isArray(keys) ? keys.find((x) => x?.family === a.family) : undefined;
    if (!k) throw new Error(`fork image: no key for the disks of family ${a.family}`);
    const psk = { identity: k.identity, key: k.key };
    checkPsk(psk);
    const mcdist = checkSliceSessions(k.mcdist, a.family);
    return { ...a, psk, ...(mcdist.length ? { mcdist } : {}) };
  });
}

export interface CloneDisksOptions extends ForkDisksOptions {
  nbd?: NbdHost;
}

/** A clone's disk as attached: its vbd, and how its overlay reads the fork's slice. */
export type AttachedCloneDisk = CloneVbd & { blocks: BlockTransport; fallback?: string };

/**
 * A clone's disks on this host: for each of the parent's vbds, an overlay over its slice in the
 * family (the clone's own head `<clone>/<disk>`), connected to a free /dev/nbdN. Returns what
 * writeCloneVbds writes. On failure nothing stays: connections, overlays.
 */
export async function attachCloneDisks(clone: string, vbds: VbdRecord[], exports: DiskForkExport[], o: CloneDisksOptions = {}): Promise<AttachedCloneDisk[]> {
  const made: AttachedCloneDisk[] = [];
  const headsMade = new Set<string>();
  const touched = new Set<string>();
  try {
    for (const v of vbds) {
      const ex = exports.find((e) => e.family === v.family && e.exports.some((x) => x.vm === v.vm && x.disk === v.disk));
      if (!ex) throw new DiskError('not-found', `the fork exports no slice of ${v.family}:${v.vm}/${v.disk} (the parent's ${v.vdev})`);
      const name = ex.exports.find((x) => x.vm === v.vm && x.disk === v.disk)!.name;
      const session = ex.mcdist?.find((m) => m.name === name);
      touched.add(v.family);
      const { socket, via } = await useFamily(v.family, o, async (f) => {
        // over mcdist: this host's backing of the fork's disk (shared with the fork's other clones here), else the front
        const via = session ? await mcdistSocketFor(f, { fork: ex.fork, vm: v.vm, disk: v.disk, clone, session, mcdist: joinOn(o.mcdist, ex.host) }) : {};
        if (via.fallback) o.log?.(`clone ${clone}: ${v.vdev} reads the front of fork ${ex.fork}: ${via.fallback}`);
        await f.addCloneDisk({ vm: clone, disk: v.disk, source: { fork: ex.fork, host: ex.host, port: ex.port, export: name, psk: ex.psk, ...(via.socket ? { socket: via.socket } : {}) } });
        return { socket: f.nbdSocket, via };
      });
      headsMade.add(v.family);
      const a: NbdAttachment = await attachNbd({ socket, export: `${clone}/${v.disk}`, ...(o.nbd ? { host: o.nbd } : {}) });
      made.push({
        record: v, target: { family: v.family, vm: clone, disk: v.disk }, device: a.device, physicalDevice: a.physicalDevice,
        blocks: via.socket ? 'mcdist' : 'front', ...(session && via.fallback ? { fallback: via.fallback } : {}),
      });
    }
    return made;
  } catch (e) {
    const left: string[] = [];
    for (const m of made) await detachNbd(m.device, { ...(o.nbd ? { host: o.nbd } : {}) }).catch((x: Error) => left.push(x.message));
    for (const name of headsMade) await useFamily(name, o, (f) => f.removeVm(clone)).catch((x: Error) => left.push(x.message));
    // a backing acquired for a disk whose overlay was never made (removeVm releases the others)
    for (const name of touched) await useFamily(name, o, (f) => releaseBackings(f.dir, clone)).then((l) => left.push(...l), (x: Error) => left.push(x.message));
    if (left.length && e instanceof Error) e.message += ` (and undoing it failed: ${left.join('; ')})`;
    throw e;
  }
}

/** Attaches and writes the clone's vbds (restore calls this before the clone runs). */
export async function plugCloneDisks(xs: XenStore, domid: number, clone: string, vbds: VbdRecord[], exports: DiskForkExport[], o: CloneDisksOptions = {}): Promise<AttachedCloneDisk[]> {
  const disks = await attachCloneDisks(clone, vbds, exports, o);
  try {
    writeCloneVbds(xs, domid, disks);
  } catch (e) {
    removeCloneVbds(xs, domid);
    await releaseCloneDisks(disks.map((d) => ({ device: d.device, target: d.target })), o);
    throw e;
  }
  return disks;
}

/**
 * Tears down what a clone's vbds held: the backends (blkback closes the devices), then each
 * nbd connection, then the clone's overlays in their families. Returns what could not be undone.
 */
export async function unplugCloneDisks(xs: XenStore, domid: number, o: CloneDisksOptions = {}): Promise<string[]> {
  const backends = readCloneVbdBackends(xs, domid);
  if (!backends.length) return [];
  removeCloneVbds(xs, domid);
  // nbd-client -d under a blkback that still has the device in use would fail its requests in flight
  const held = await waitVbdsClosed(xs, domid, backends.map((b) => b.devid), 30_000);
  const left = await releaseCloneDisks(backends.filter((b) => b.device || b.target).map((b) => ({ device: b.device, target: b.target })), o);
  return held.length ? [`blkback still held vbd ${held.join(', ')} of domain ${domid} after 30 s; its nbd devices were disconnected anyway`, ...left] : left;
}

async function releaseCloneDisks(disks: { device: string | null; target: { family: string; vm: string; disk: string } | null }[], o: CloneDisksOptions): Promise<string[]> {
  const left: string[] = [];
  for (const d of disks) {
    if (d.device) await detachNbd(d.device, { ...(o.nbd ? { host: o.nbd } : {}) }).catch((e: Error) => left.push(e.message));
  }
  const vms = new Map<string, string>();
  for (const d of disks) if (d.target) vms.set(`${d.target.family}\0${d.target.vm}`, d.target.family);
  for (const [key, family] of vms) {
    const vm = key.split('\0')[1]!;
    try {
      await useFamily(family, o, (f) => f.removeVm(vm));
    } catch (e) {
      if ((e as DiskError).code !== 'not-found') left.push(`removing ${vm}'s disks from family ${family}: ${(e as Error).message}`);
    }
  }
  return left;
}

/**
 * Where a clone host joins a fork's groups: the caller's address, else the fork's own address when
 * it is a loopback one (the clone is on the parent's host, whose slice server sends there: the
 * kernel finds no multicast route to a group on lo, ENODEV), else the kernel's choice.
 */
function joinOn(m: McdistDiskOptions | undefined, forkHost: string): McdistDiskOptions | undefined {
  if (m?.interfaceAddress || !/^127\./.test(forkHost)) return m;
  return { ...m, interfaceAddress: forkHost };
}
