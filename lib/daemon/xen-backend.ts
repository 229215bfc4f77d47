/**
 * The CloneBackend of a real Xen dom0, with memory on demand. Capture (parent's host): the
 * parent suspends, its descriptor and a copy of its memory are taken, a memserver starts on
 * that copy, and the parent stays stopped until release(). The fork image carries the
 * descriptor itself (deflated; ~25 KB becomes a few) and the memserver's address and key (sealed to
 * this host's key; the master re-seals it for each clone host, image-secrets.ts), so a
 * clone's host needs nothing else: it builds each clone from the descriptor with its memory out
 * and starts its memtap (lib/clone/lazy.ts). What this backend holds is written to dom0-only
 * xenstore, so that a restarted daemon finds its clones and lets go of a parent it left stopped.
 */
import { isIPv4 } from 'node:net';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { XenControl, XenStore } from '../xen/native.js';
import { decodeDescriptor } from '../descriptor/format.js';
import { destroyClone } from '../descriptor/restore.js';
import { whoHoldsDomid } from '../descriptor/domain-uuid.js';
import { releaseCloneNics } from '../xen/clone-nic.js';
import { DEFAULT_STATE_DIR, restoreLazy } from '../clone/lazy.js';
import { cloneName } from '../clone/names.js';
import { captureFork } from '../clone/capture-fork.js';
import { checkDiskForkExports, diskKeysSecret, releaseForkDisks, withDiskKeys, type DiskForkAddress } from '../clone/fork-disks.js';
import { describeDiskTransport, type BlockTransport } from '../clone/disk-transport.js';
import { seal, unseal } from './seal.js';
import { FamilyNetwork } from './family-network.js';
import { ForkLeftovers } from './fork-leftovers.js';
import { writeTokenFile } from '../memtap/token.js';
import { domainName } from '../xen/resolve.js';
import { resumeSuspended } from '../xen/suspend.js';
import type { BuiltClone, CloneBackend, DomainSize, ForkImage, ForkInfo, HeldClone } from './backend.js';

export interface XenBackendOptions {
  /** the address clones on other hosts reach this host's memservers at */
  advertiseHost: string;
  /** this host's key (host-key.ts): fork images' secrets are sealed to it (image-secrets.ts) */
  hostKey: Buffer;
  /** filter each family's clones into a network of their own (nftables in dom0) */
  isolateFamilies?: boolean;
  stateDir?: string;
  prefetch?: number;
  heuristics?: boolean;
  freeReportWaitMs?: number;
  /** how clones read the disk slices of forks captured here (default 'front'; ForkDisksOptions.blocks) */
  diskTransport?: BlockTransport;
  /** events worth an operator's eye: which way each clone's disks read their fork ('clone-disks') */
  log?: (event: string, fields?: Record<string, unknown>) => void;
}

const IMAGE_FORMAT = 'snowflock-fork-image/2';
const RECORDS = '/local/domain/0/snowflock/daemon';
const DESTROY_WAIT_MS = 30_000;

interface CloneRecord {
  fork: string;
  vmid: number;
  uuid: string;
}

export class XenBackend implements CloneBackend {
  private readonly stateDir: string;
  /** parents stopped by capture(), with what lets them run on */
  private readonly stopped = new Map<number, () => void>();
  private readonly network: FamilyNetwork;
  private readonly leftovers = new ForkLeftovers();
  /** forks captured here whose parents had disks: their slice exports, released when the fork is abandoned */
  private readonly forkDisks = new Map<string, DiskForkAddress[]>();

  constructor(
    private readonly xc: XenControl,
    private readonly xs: XenStore,
    private readonly o: XenBackendOptions,
  ) {
    this.stateDir = o.stateDir ?? DEFAULT_STATE_DIR;
    this.network = new FamilyNetwork(o.isolateFamilies ?? false);
  }

  async describe(domid: number): Promise<DomainSize> {
    const d = this.xc.domainInfo(domid); // ESRCH names an unknown domain
    return { vcpus: d.maxVcpuId + 1, memoryMiB: Math.ceil((d.maxPages * 4) / 1024) };
  }

  async capture(parent: number, fork: ForkInfo): Promise<ForkImage> {
    const dir = this.forkDir(fork.fork);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Recorded before the suspend: a daemon that dies mid-capture leaves a parent recover() resumes.
    this.xs.write(`${RECORDS}/stopped/${parent}`, fork.fork);
    let f;
    try {
      // The memserver listens where clones are told to reach it, not on every address.
      f = await captureFork(this.xc, this.xs, parent, { dir, clones: fork.clones, keepParentStopped: true, listenHost: this.o.advertiseHost, fork: fork.fork, ...(this.o.diskTransport ? { diskOptions: { blocks: this.o.diskTransport } } : {}) });
    } catch (e) {
      this.removeRecord(`${RECORDS}/stopped/${parent}`);
      rmSync(dir, { recursive: true, force: true }); // the parent's memory, if it got that far
      throw e;
    }
    this.leftovers.started(fork.fork, f.memserver.pid, dir);
    this.stopped.set(parent, f.captured.resumeParent);
    this.network.parentCaptured(fork.fork, parent);
    const disks = f.disks.map(({ psk: _psk, mcdist: _sessions, ...address }) => address);
    if (disks.length) this.forkDisks.set(fork.fork, disks);
    return {
      format: IMAGE_FORMAT,
      parentName: domainName(this.xs, parent),
      descriptor: deflateRawSync(f.encoded).toString('base64'),
      memserver: { host: this.o.advertiseHost, port: f.memserver.port },
      sealedToken: seal(this.o.hostKey, Buffer.from(f.token, 'hex'), fork.fork),
      // The slices' fronts (clear) and the fork's keys for them (sealed like the memserver key).
      ...(disks.length ? { disks, sealedDiskKeys: seal(this.o.hostKey, diskKeysSecret(f.disks), fork.fork) } : {}),
    };
  }

  async build(image: ForkImage, fork: ForkInfo, vmids: number[]): Promise<BuiltClone[]> {
    const { descriptor, memserver, token, parentName, disks } = parseImage(image, this.o.hostKey, fork.fork);
    const dir = this.forkDir(fork.fork);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tokenFile = join(dir, 'token');
    writeTokenFile(tokenFile, token);
    const built: BuiltClone[] = [];
    try {
      for (const vmid of vmids) {
        const c = await restoreLazy(this.xc, this.xs, descriptor, {
          vmid, name: cloneName(parentName, fork.fork.slice(0, 8), vmid), server: memserver, tokenFile, logDir: dir,
          prefetch: this.o.prefetch, heuristics: this.o.heuristics, freeReportWaitMs: this.o.freeReportWaitMs, start: false,
          macs: this.network.macsFor(fork.fork, vmid, descriptor.meta.nics ?? []), holdNetwork: true, ...(disks.length ? { disks } : {}),
          // mcdist joins the fork's groups where this host is reached, not where the kernel's routes say
          ...(disks.length && isIPv4(this.o.advertiseHost) ? { diskOptions: { mcdist: { interfaceAddress: this.o.advertiseHost } } } : {}),
        });
        this.writeClone(c.domid, { fork: fork.fork, vmid, uuid: c.uuid });
        if (c.disks.length) this.o.log?.('clone-disks', { domid: c.domid, vmid, disks: c.disks.map(describeDiskTransport).join(',') });
        built.push({ vmid, domid: c.domid });
      }
      await this.network.built(fork, descriptor.meta.nics ?? [], built);
      return built;
    } catch (e) {
      for (const b of built) await this.destroy(b.domid);
      throw e;
    }
  }

  async start(domids: number[]): Promise<void> {
    for (const domid of domids) {
      const r = this.readClone(domid);
      if (!r || whoHoldsDomid(this.xc, domid, r.uuid) !== 'it') throw new Error(`domain ${domid} is not a clone built here`);
    }
    for (const domid of domids) this.xc.unpause(domid);
  }

  async releaseNetwork(domid: number): Promise<string[]> {
    if (!this.readClone(domid)) return [];
    return releaseCloneNics(this.xs, domid);
  }

  async release(parent: number): Promise<void> {
    const resume = this.stopped.get(parent);
    this.stopped.delete(parent);
    this.removeRecord(`${RECORDS}/stopped/${parent}`);
    resume?.();
  }

  async abandon(fork: string): Promise<void> {
    await this.leftovers.discard(fork);
    const disks = this.forkDisks.get(fork);
    this.forkDisks.delete(fork);
    if (disks) await releaseForkDisks(disks);
  }

  async destroy(domid: number): Promise<void> {
    const record = this.readClone(domid);
    if (!record) {
      if (this.state(domid) === 'live') throw new Error(`refusing to destroy domain ${domid}: it is not a clone built here`);
      return;
    }
    await destroyClone(this.xc, this.xs, domid, record.uuid);
    this.removeRecord(`${RECORDS}/clones/${domid}`);
    if (!this.heldForks().has(record.fork)) await this.network.ended(record.fork);
    // A destroyed domain lingers (dying) until its last mapping goes: the memtap's ring and
    // foreign mappings, released when it sees the domain die. "Destroyed" means gone (or its
    // domid already given to another domain, which destroyClone left alone).
    const deadline = Date.now() + DESTROY_WAIT_MS;
    while (whoHoldsDomid(this.xc, domid, record.uuid) === 'it') {
      if (Date.now() > deadline) throw new Error(`domain ${domid} is still dying ${DESTROY_WAIT_MS / 1000} s after destroy (something still maps its memory)`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  ended(domid: number): string | null {
    if (this.state(domid) === 'gone') return 'gone';
    try {
      const r = this.readClone(domid);
      if (r && whoHoldsDomid(this.xc, domid, r.uuid) !== 'it') return 'gone'; // its domid is another domain's now
      const reason = this.xc.domainInfo(domid).shutdownReason;
      // A clone shut down for 'suspend' is being forked itself (a clone of a clone).
      return reason === undefined || reason === 'suspend' ? null : reason;
    } catch {
      return 'gone';
    }
  }

  async recover(): Promise<HeldClone[]> {
    // A parent an earlier daemon left suspended runs on (its fork is void).
    for (const id of this.xs.directory(`${RECORDS}/stopped`) ?? []) {
      const parent = Number(id);
      try {
        if (this.xc.domainInfo(parent).shutdownReason === 'suspend') resumeSuspended(this.xc, this.xs, parent);
      } catch {
        /* gone */
      }
      this.removeRecord(`${RECORDS}/stopped/${id}`);
    }
    const held: HeldClone[] = [];
    for (const id of this.xs.directory(`${RECORDS}/clones`) ?? []) {
      const domid = Number(id);
      const r = this.readClone(domid);
      if (r && this.state(domid) === 'live') held.push({ domid, fork: r.fork, vmid: r.vmid });
      else this.removeRecord(`${RECORDS}/clones/${id}`);
    }
    return held;
  }

  private forkDir(fork: string): string {
    if (!/^[\w-]{1,64}$/.test(fork)) throw new Error(`bad fork id "${fork}"`);
    return join(this.stateDir, 'families', fork);
  }

  private heldForks(): Set<string> {
    return new Set((this.xs.directory(`${RECORDS}/clones`) ?? []).map((id) => this.readClone(Number(id))?.fork).filter((f): f is string => !!f));
  }

  private writeClone(domid: number, r: CloneRecord): void {
    this.xs.write(`${RECORDS}/clones/${domid}`, JSON.stringify(r));
  }

  private readClone(domid: number): CloneRecord | null {
    const raw = this.xs.read(`${RECORDS}/clones/${domid}`);
    if (raw === null) return null;
    try {
      return JSON.parse(raw) as CloneRecord;
    } catch {
      return null;
    }
  }

  /** Whether Xen still lists the domain: 'live', 'dying' (destroyed, memory still mapped) or 'gone'. */
  private state(domid: number): 'live' | 'dying' | 'gone' {
    try {
      return this.xc.domainInfo(domid).dying ? 'dying' : 'live';
    } catch {
      return 'gone';
    }
  }

  private removeRecord(path: string): void {
    try {
      this.xs.rm(path);
    } catch {
      /* already gone */
    }
  }
}

/** A secret sealed in a fork image; a failure names which secret. */
function unsealNamed(hostKey: Buffer, sealed: string, fork: string, what: string): Buffer {
  try {
    return unseal(hostKey, sealed, fork);
  } catch (e) {
    throw new Error(`fork image: ${what}: ${(e as Error).message}`);
  }
}

/** Reads a fork image made by capture() for `fork`; throws naming what is wrong (it crossed the network). */
export function parseImage(image: ForkImage, hostKey: Buffer, fork: string) {
  if (image.format !== IMAGE_FORMAT) throw new Error(`fork image format "${String(image.format)}" is not ${IMAGE_FORMAT}`);
  const m = image.memserver as { host?: unknown; port?: unknown } | undefined;
  if (typeof m?.host !== 'string' || !Number.isInteger(m.port)) throw new Error('fork image: memserver address missing');
  if (typeof image.sealedToken !== 'string') throw new Error('fork image: sealed memserver key missing');
  const token = unsealNamed(hostKey, image.sealedToken, fork, 'memserver key');
  if (token.length !== 32) throw new Error('fork image: memserver key has the wrong length');
  if (typeof image.descriptor !== 'string') throw new Error('fork image: descriptor missing');
  let bytes: Buffer;
  try {
    bytes = inflateRawSync(Buffer.from(image.descriptor, 'base64'));
  } catch (e) {
    throw new Error(`fork image: descriptor does not inflate: ${(e as Error).message}`);
  }
  let disks: ReturnType<typeof withDiskKeys> = [];
  if (image.disks !== undefined) {
    if (typeof image.sealedDiskKeys !== 'string') throw new Error('fork image: sealed disk keys missing');
    disks = withDiskKeys(checkDiskForkExports(image.disks, 'fork image'), unsealNamed(hostKey, image.sealedDiskKeys, fork, 'disk keys'));
  }
  return {
    disks,
    descriptor: decodeDescriptor(bytes, 'fork image'),
    memserver: { host: m.host, port: m.port as number },
    token: token.toString('hex'),
    parentName: typeof image.parentName === 'string' && /^[\w.-]{1,64}$/.test(image.parentName) ? image.parentName : 'clone',
  };
}
