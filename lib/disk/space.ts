// Whether the filesystem a disk writes to is full. QEMU's NBD server answers a write that finds
// no room with ENOSPC to that client and tells no one else (QSD 7.2 emits no BLOCK_IO_ERROR for
// an export, and its blockstats count no failed write), so the family sees a full overlay by the
// room left where the overlay grows.
import { statSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DiskErrorCode } from './errors.js';

/** Below this, a write that allocates can fail: a 64 KiB data cluster, an L2 table and a refcount block need up to three clusters. */
export const FULL_BELOW_BYTES = 4 * 65536;

/** Free bytes (for an unprivileged writer) on the filesystem holding `path`. */
export function freeBytes(path: string): number {
  const st = statfsSync(path);
  return Number(st.bavail) * Number(st.bsize);
}

/** A `no-space` fault when the filesystem holding `file` (a regular file: an overlay or a parent's image) is full. */
export function spaceFault(file: string): { code: DiskErrorCode; message: string } | undefined {
  let free: number;
  try {
    if (!statSync(file).isFile()) return undefined; // a block device has its size, not a filesystem's room
    free = freeBytes(dirname(file));
  } catch {
    return undefined;
  }
  if (free >= FULL_BELOW_BYTES) return undefined;
  return { code: 'no-space', message: `the filesystem holding ${file} is full (${free} bytes free): writes that allocate get ENOSPC (No space left on device)` };
}
