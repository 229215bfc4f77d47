/**
 * What a host daemon needs from the hypervisor to fork a VM across hosts. The daemons decide who
 * may fork and in which order things happen; a backend only does them. The master drives a fork
 * as: capture (parent's host) -> build (each clone's host, in parallel) -> start (each clone's
 * host) -> release (parent's host). If any build or start fails, the clones already built are
 * destroyed and the parent is released: a fork happens entirely or not at all.
 *
 * The real Xen backend (descriptor capture, memory on demand, restore on each host) plugs in here;
 * fake-backend.ts is the in-memory one the tests use.
 */
import type { ForkInfo } from './messages.js';

export type { ForkInfo } from './messages.js';

/** The size of a domain: each of its clones gets the same. */
export interface DomainSize {
  vcpus: number;
  memoryMiB: number;
}

/** What the clones' hosts build from, as JSON (at most 16 KiB): descriptor location, memory server, ... */
export type ForkImage = Record<string, unknown>;

export interface BuiltClone {
  vmid: number;
  domid: number;
}

/** A clone that exists on this host (recover()). */
export interface HeldClone {
  domid: number;
  /** The ticket id of the fork that made it. */
  fork: string;
  vmid: number;
}

export interface CloneBackend {
  /** The size of a running domain. Rejects if there is no such domain on this host. */
  describe(domid: number): Promise<DomainSize>;

  /**
   * Parent's host. Stops the parent at a consistent point and captures what its clones are built
   * from. The parent stays stopped until release() is called, whatever happens to the fork.
   * A failed capture leaves the parent running.
   */
  capture(parent: number, fork: ForkInfo): Promise<ForkImage>;

  /**
   * A clone's host. Builds one domain per vmid from the image; resolves only when every one is
   * built, paused, and ready to run, with its vmid visible to the guest (xenstore snowflock/vmid).
   * On failure it destroys what it built and rejects. Built clones must be findable by recover().
   */
  build(image: ForkImage, fork: ForkInfo, vmids: number[]): Promise<BuiltClone[]>;

  /** A clone's host. Unpauses clones this backend built. */
  start(domids: number[]): Promise<void>;

  /**
   * A clone's host. Puts a clone's vifs, held off their bridges since the build, on them: the
   * guest library asks once it has moved the clone off the parent's address. Returns the vifs
   * released: none for a domain that is not a clone built here, or whose vifs are out already.
   */
  releaseNetwork(domid: number): Promise<string[]>;

  /** Parent's host. Lets the parent run on after its fork (succeeded or failed). Idempotent. */
  release(parent: number, fork: ForkInfo): Promise<void>;

  /**
   * The fork failed (or its master is gone before it finished): stop what capture started for
   * it (a memory server) and remove its files (the parent's memory). Idempotent; nothing to do
   * for a fork this host did not capture.
   */
  abandon?(fork: string): Promise<void>;

  /**
   * Destroys a clone and what it held (memory server session, disk overlay). Resolves when the
   * domain is gone; a domain already gone is success. Must refuse any domain it did not build.
   */
  destroy(domid: number): Promise<void>;

  /**
   * Called once when the daemon starts: lets any parent a previous daemon left stopped mid-fork
   * run again, and lists the clones that exist on this host (the master decides their fate).
   */
  recover(): Promise<HeldClone[]>;

  /**
   * Why a clone built here no longer runs on its own account (e.g. 'crash', 'poweroff', 'gone'),
   * or null while it runs. The daemon asks every few seconds, so a clone that dies does not keep
   * its parent's sf_join waiting. Must be cheap and must not throw for a domain that vanished.
   */
  ended(domid: number): string | null;
}
