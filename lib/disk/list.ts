// What `snowflock disk` shows: a family's slices and the overlays VMs write, from the family's
// record, checked against its daemon through the query monitor (the owner's stays free), and
// qemu-img check of frozen overlays. Reads only.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { DiskError, type DiskErrorCode } from './errors.js';
import { checkOverlay, type ImageCheck } from './qemu-img.js';
import { QmpClient } from './qmp.js';
import { checkName, familyNames, readRecord, type FamilyRecord } from './record.js';
import { spaceFault } from './space.js';
import { daemonPaths, runningDaemon } from './storage-daemon.js';

export interface SliceRow {
  family: string;
  fork: string;
  vm: string;
  disk: string;
  n: number;
  /** exported: to the fork's clones over TLS; frozen: not (yet) exported to them; released: the fork has ended */
  state: 'exported' | 'frozen' | 'released';
  file: string;
  sizeBytes: number;
  frozenAt: string;
  host?: string;
  port?: number;
  identity?: string;
  frontAlive?: boolean;
}

export interface OverlayRow {
  family: string;
  vm: string;
  disk: string;
  kind: 'parent' | 'clone';
  /** NBD export on the family's unix socket */
  export: string;
  socket: string;
  /** the family's daemon still exports it */
  exported: boolean;
  /** what lies under the overlays: the parent's image, or a fork's slice over NBD */
  base: string;
  /** overlay files, bottom first; the last one is written */
  layers: string[];
  allocatedBytes: number;
  sizeBytes: number;
  /** what is wrong with it: not reopened when its daemon was relaunched (the error), or no room left to write */
  fault?: { code: DiskErrorCode; message: string };
}

interface Live {
  exports: Set<string>;
  actualSize: Map<string, number>;
}

/** The family's daemon as its query monitor sees it; undefined when it is not running. */
async function live(dir: string): Promise<Live | undefined> {
  const paths = daemonPaths(join(dir, 'run'));
  if (runningDaemon(paths) === undefined) return undefined;
  const q = await QmpClient.connect(paths.query);
  try {
    const exports = await q.execute<{ id: string }[]>('query-block-exports');
    const nodes = await q.execute<{ 'node-name': string; image: { 'actual-size'?: number } }[]>('query-named-block-nodes', { flat: true });
    return { exports: new Set(exports.map((e) => e.id)), actualSize: new Map(nodes.map((n) => [n['node-name'], n.image['actual-size'] ?? 0])) };
  } finally {
    q.close();
  }
}

function record(stateDir: string, family: string): FamilyRecord {
  const r = readRecord(join(stateDir, checkName('family', family)));
  if (!r) throw new DiskError('not-found', `no disk family ${family} in ${stateDir}`);
  return r;
}

export async function listSlices(stateDir: string, family: string): Promise<SliceRow[]> {
  const dir = join(stateDir, family);
  const r = record(stateDir, family);
  const l = await live(dir);
  return r.slices.map((s) => {
    const front = r.fronts.find((f) => f.fork === s.fork);
    const exported = !!(s.exportId && l?.exports.has(s.exportId));
    const frontAlive = front ? runningDaemon(daemonPaths(front.dir)) !== undefined : undefined;
    return {
      family, fork: s.fork, vm: s.vm, disk: s.disk, n: s.n,
      state: s.released ? 'released' : exported && frontAlive ? 'exported' : 'frozen',
      file: s.file, sizeBytes: s.sizeBytes, frozenAt: s.frozenAt,
      ...(front ? { host: front.host, port: front.port, identity: front.identity, frontAlive } : {}),
    };
  });
}

/** Overlays of one family, or of every family under the state directory. */
export async function listOverlays(stateDir: string, family?: string): Promise<OverlayRow[]> {
  const rows: OverlayRow[] = [];
  for (const f of family ? [family] : familyNames(stateDir)) {
    const dir = join(stateDir, f);
    const r = record(stateDir, f);
    const l = await live(dir);
    for (const h of r.heads) {
      const allocated = h.layers.reduce((a, x) => a + (l?.actualSize.get(x.fileNode) ?? fileBytes(x.file)), 0);
      const fault = h.fault ?? spaceFault(h.layers.at(-1)?.file ?? (h.base.kind === 'image' ? h.base.image : ''));
      rows.push({
        family: f, vm: h.vm, disk: h.disk, kind: h.kind, export: h.export, socket: join(dir, 'run', 'nbd.sock'),
        exported: l?.exports.has(h.exportId) ?? false,
        base: h.base.kind === 'image' ? h.base.image : `nbds://${h.base.host}:${h.base.port}/${h.base.export} (fork ${h.base.fork})`,
        layers: h.layers.map((x) => x.file), allocatedBytes: allocated, sizeBytes: h.sizeBytes,
        ...(fault ? { fault: { code: fault.code, message: fault.message } } : {}),
      });
    }
  }
  return rows.sort((a, b) => a.family.localeCompare(b.family) || a.vm.localeCompare(b.vm) || a.disk.localeCompare(b.disk));
}

/** qemu-img check of each frozen overlay of a family (the slices nobody writes). */
export async function checkSlices(stateDir: string, family: string): Promise<(ImageCheck & { vm: string; disk: string; fork: string })[]> {
  const r = record(stateDir, family);
  const out: (ImageCheck & { vm: string; disk: string; fork: string })[] = [];
  for (const s of r.slices) {
    if (s.file.endsWith('.qcow2')) out.push({ ...(await checkOverlay(s.file)), vm: s.vm, disk: s.disk, fork: s.fork });
  }
  return out;
}

function fileBytes(file: string): number {
  try {
    return statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}
