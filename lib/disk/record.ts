// What a disk family holds on this host, kept as JSON next to its overlays so that another
// process (`snowflock disk`, a restarted host daemon) can see it: the disks its VMs write
// (heads), the frozen slices of each fork, and the per-fork TLS fronts exporting them.
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiskError, type DiskErrorCode } from './errors.js';

export const DEFAULT_DISK_STATE_DIR = join(process.env.SNOWFLOCK_STATE ?? '/var/lib/snowflock', 'disks');

/** Names that become parts of paths, node names and export names. */
export function checkName(kind: string, name: string): string {
  if (!/^[A-Za-z0-9][\w.-]{0,63}$/.test(name)) throw new DiskError('bad-name', `bad ${kind} name "${name}": 1..64 of [A-Za-z0-9_.-], starting with a letter or digit`);
  return name;
}

/** One qcow2 overlay of ours in a head's chain. */
export interface Layer {
  node: string;
  fileNode: string;
  file: string;
}

/** The bottom of a head: the parent's own image, or a fork's slice read over NBD. */
export type Base =
  | { kind: 'image'; node: string; fileNode: string; image: string; format: 'raw' | 'qcow2' }
  | {
    kind: 'nbd'; node: string; fork: string; host: string; port: number; export: string; identity: string; pskDir: string; credsId: string;
    /** read through a local NBD server on this unix socket (an mcdist backing), not the front: no key object */
    socket?: string;
  };

/** A disk a VM writes: exported writable on the family's unix socket. */
export interface Head {
  vm: string;
  disk: string;
  kind: 'parent' | 'clone';
  /** NBD export name on the family's unix socket (`<vm>/<disk>`) */
  export: string;
  exportId: string;
  base: Base;
  /** our overlays above the base, bottom first; the active node is the last one (or the base) */
  layers: Layer[];
  sizeBytes: number;
  createdAt: string;
  /** set when a relaunched daemon could not open this head: it is not in the graph, its files are kept */
  fault?: HeadFault;
}

/** Why a head is not open: the error code and message that refused it, and when. */
export interface HeadFault {
  code: DiskErrorCode;
  message: string;
  at: string;
}

/** A frozen, read-only state of a head at a fork. */
export interface Slice {
  fork: string;
  vm: string;
  disk: string;
  /** the head's Nth freeze */
  n: number;
  node: string;
  /** read-only export on the family's unix socket, which the fork's front reads */
  export?: string;
  exportId?: string;
  /** the file the slice's own blocks are in (the parent's image, or an overlay) */
  file: string;
  sizeBytes: number;
  frozenAt: string;
  /** the fork was released: no longer exported (the node stays under the head's later layers) */
  released?: boolean;
}

/** A fork's slices exported over TCP with the fork's TLS PSK by a QSD of its own. */
export interface Front {
  fork: string;
  pid: number;
  host: string;
  port: number;
  identity: string;
  dir: string;
  pskDir: string;
  exports: { vm: string; disk: string; name: string }[];
}

export interface FamilyRecord {
  version: 1;
  family: string;
  /** counter for node, export and object ids */
  seq: number;
  pid: number;
  heads: Head[];
  slices: Slice[];
  fronts: Front[];
}

export const recordFile = (dir: string) => join(dir, 'family.json');

export function readRecord(dir: string): FamilyRecord | undefined {
  const file = recordFile(dir);
  if (!existsSync(file)) return undefined;
  const r = JSON.parse(readFileSync(file, 'utf8')) as FamilyRecord;
  if (r.version !== 1) throw new Error(`${file}: record version ${String(r.version)} is not 1`);
  return r;
}

export function writeRecord(dir: string, r: FamilyRecord): void {
  const tmp = `${recordFile(dir)}.tmp`;
  writeFileSync(tmp, JSON.stringify(r, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, recordFile(dir));
}

/** The families with a record under a disk state directory. */
export function familyNames(stateDir: string): string[] {
  if (!existsSync(stateDir)) return [];
  return readdirSync(stateDir).filter((f) => existsSync(recordFile(join(stateDir, f)))).sort();
}
