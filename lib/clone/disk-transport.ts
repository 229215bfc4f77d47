// Which way a fork's disk blocks reach its clones (docs/disks.md "mcdist for blocks"): through
// the fork's front (TLS over TCP, one stream per clone's host; the default), or over mcdist
// (one multicast send per block for every clone host that needs it; opt-in), with the front
// as the fallback of every disk whose multicast does not work.
import { decodeSession } from '../mcdist/session.js';
import { defaultMcdistWorker } from '../disk/detached-worker.js';
import type { SliceSession } from '../disk/mcdist-backing.js';
import { acquireBacking } from '../disk/shared-backings.js';
import type { BlockTransport } from '../disk/slice-servers.js';
import type { DiskFamily } from '../disk/family.js';

export type { BlockTransport };

export interface McdistDiskOptions {
  /** the mcdist-worker script (default: the one beside lib/disk/detached-worker) */
  worker?: string;
  /** how long a clone host's new backing may take to get a first block before its clones read the front (ms) */
  checkMs?: number;
  /** a clone host's local address to join the group on (the kernel's choice if unset) */
  interfaceAddress?: string;
}

/** What a fork's result says of each disk: the transport its clones use, and why not mcdist when asked for. */
export interface DiskTransportUsed {
  vm: string;
  disk: string;
  blocks: BlockTransport;
  fallback?: string;
}

/** A clone's disk as one token, `xvda:mcdist` or `xvda:front (why not mcdist)`: for logs and reports. */
export function describeDiskTransport(d: { vdev: string; blocks: BlockTransport; fallback?: string }): string {
  return `${d.vdev}:${d.blocks}${d.fallback ? ` (${d.fallback})` : ''}`;
}

export function parseBlockTransport(v: string): BlockTransport {
  if (v === 'front' || v === 'mcdist') return v;
  throw new Error(`unknown disk transport ${v} (front or mcdist)`);
}

/** Checks the slice sessions of a fork image (sealed with the disks' keys; decoded on a clone's host). */
export function checkSliceSessions(value: unknown, family: string): SliceSession[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`fork image: the mcdist sessions of family ${family} are not a list`);
  return value.map((v: Partial<SliceSession>, i) => {
    if (typeof v?.session !== 'string' || typeof v.name !== 'string' || !Number.isSafeInteger(v.sizeBytes)) {
      throw new Error(`fork image: mcdist session ${i} of family ${family} is malformed`);
    }
    decodeSession(v.session); // throws naming the field
    return { session: v.session, name: v.name, sizeBytes: v.sizeBytes! };
  });
}

/**
 * The unix socket a clone's overlay reads `session` through (this host's shared backing of the
 * fork's disk), or the reason it reads the front: the backing could not join, or got no block in time.
 */
export async function mcdistSocketFor(f: DiskFamily, o: { fork: string; vm: string; disk: string; clone: string; session: SliceSession; mcdist?: McdistDiskOptions }): Promise<{ socket?: string; fallback?: string }> {
  try {
    const socket = await acquireBacking({
      familyDir: f.dir, fork: o.fork, vm: o.vm, disk: o.disk, clone: o.clone, session: o.session,
      script: o.mcdist?.worker ?? defaultMcdistWorker(),
      ...(o.mcdist?.checkMs !== undefined ? { checkMs: o.mcdist.checkMs } : {}),
      ...(o.mcdist?.interfaceAddress ? { interfaceAddress: o.mcdist.interfaceAddress } : {}),
    });
    return { socket };
  } catch (e) {
    return { fallback: (e as Error).message };
  }
}
