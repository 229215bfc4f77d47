// A disk family on one host: one qemu-storage-daemon holding every disk of a VM lineage that
// this host serves (a parent's disks, its clones' overlays), the copy-on-write logic left to
// qcow2. Freezing a VM's disks puts a fresh overlay on top of each active node (QMP
// transaction of blockdev-snapshot); the old active node becomes a read-only slice, exported
// to the fork's front. A clone's disk is a sparse overlay over a fork's slice read over NBD.
// Every operation undoes what it made when a later step fails.
import { mkdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DiskError, classify } from './errors.js';
import { addExport, addForkNode, addFormatNode, addPskCreds, backingOf, nodeSize, removeExport } from './graph.js';
import { startFront, stopFront } from './front.js';
import { newPsk, privateDir, pskIdentity, writePskDir, type Psk } from './psk.js';
import { createOverlay, imageInfo, type ImageCheck } from './qemu-img.js';
import { checkSlices } from './list.js';
import { reopenFamily } from './relaunch.js';
import { releaseBackings } from './shared-backings.js';
import { stopSliceServers } from './slice-servers.js';
import { freeBytes } from './space.js';
import { QmpClient, type QmpEvent } from './qmp.js';
import { checkName, DEFAULT_DISK_STATE_DIR, readRecord, writeRecord, type Base, type FamilyRecord, type Front, type Head, type Layer, type Slice } from './record.js';
import { daemonPaths, runningDaemon, startStorageDaemon, stopStorageDaemon, type DaemonPaths } from './storage-daemon.js';
import { Undo } from './undo.js';

export interface DiskFamilyOptions {
  family: string;
  /** where families live (default $SNOWFLOCK_STATE/disks, /var/lib/snowflock/disks) */
  stateDir?: string;
  log?: (message: string) => void;
}

/** What a fork's clones need to open its slices: the front's address, the fork's key, the exports. */
export interface ForkExport {
  fork: string;
  host: string;
  port: number;
  psk: Psk;
  exports: { vm: string; disk: string; name: string; sizeBytes: number }[];
}

/** Where a clone's disk reads what it has not written: one export of a fork's front. */
export interface CloneSource {
  fork: string;
  host: string;
  port: number;
  export: string;
  psk: Psk;
  /**
   * Read the fork through a local NBD server on this unix socket (an mcdist backing:
   * mcdist-backing.ts) instead of the front: no TLS, the socket is this host's own.
   */
  socket?: string;
}

export interface CorruptionEvent {
  node: string;
  message: string;
  fatal: boolean;
}

interface Prepared {
  fresh: { head: Head; layer: Layer; old: string }[];
  undo: Undo;
}

export class DiskFamily {
  readonly dir: string;
  readonly daemon: DaemonPaths;
  /** the NBD unix socket: each head is exported writable here as `<vm>/<disk>` (dom0's nbd client attaches to it) */
  readonly nbdSocket: string;
  readonly overlayDir: string;
  private readonly pskRoot: string;
  private readonly frontsDir: string;
  /** qcow2 nodes QEMU found corrupt (BLOCK_IMAGE_CORRUPTED), newest last */
  readonly corruptions: CorruptionEvent[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  /** overlays made ahead of a freeze, by fork */
  private readonly prepared = new Map<string, Prepared>();

  private constructor(
    readonly family: string,
    private readonly stateDir: string,
    private record: FamilyRecord,
    private readonly qmp: QmpClient,
    private readonly log: (message: string) => void,
  ) {
    this.dir = join(stateDir, family);
    this.daemon = daemonPaths(join(this.dir, 'run'));
    this.nbdSocket = join(this.daemon.dir, 'nbd.sock');
    this.overlayDir = join(this.dir, 'overlays');
    this.pskRoot = join(this.dir, 'psk');
    this.frontsDir = join(this.dir, 'fronts');
    qmp.on('event', (e: QmpEvent) => {
      if (e.event !== 'BLOCK_IMAGE_CORRUPTED') return;
      const c = { node: String(e.data['node-name'] ?? e.data.device), message: String(e.data.msg), fatal: e.data.fatal === true };
      this.corruptions.push(c);
      this.log(`QEMU found node ${c.node} corrupt: ${c.message}`);
    });
  }

  /**
   * Opens the family on this host: connects to its running daemon, or starts one (with its
   * NBD server on the family's unix socket) when the family has none yet. When its daemon has
   * died, the new one reopens every disk, slice export and front the record lists; a disk that
   * cannot be reopened (a damaged overlay, an unreachable fork) is left out with its `fault`.
   */
  static async open(o: DiskFamilyOptions): Promise<DiskFamily> {
    const family = checkName('family', o.family);
    const stateDir = o.stateDir ?? DEFAULT_DISK_STATE_DIR;
    const dir = join(stateDir, family);
    const log = o.log ?? (() => {});
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const paths = daemonPaths(join(dir, 'run'));
    const existing = readRecord(dir);
    const pid = runningDaemon(paths);
    if (pid !== undefined) {
      if (!existing) throw new DiskError('not-found', `family ${family}: a storage daemon (pid ${pid}) runs without a record in ${dir}`);
      const qmp = await QmpClient.connect(paths.qmp).catch((e: Error) => {
        throw new DiskError('in-use', `family ${family}: its storage daemon (pid ${pid}) does not answer; another process may hold it: ${e.message}`);
      });
      return new DiskFamily(family, stateDir, existing, qmp, log);
    }
    return Undo.guard(async (undo) => {
      undo.push(`remove ${paths.dir}`, () => rmSync(paths.dir, { recursive: true, force: true }));
      const { pid: started, qmp } = await startStorageDaemon(paths);
      undo.push(`stop storage daemon ${started}`, () => stopStorageDaemon(started, qmp));
      const familySocket = join(paths.dir, 'nbd.sock');
      await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: familySocket } } });
      const record: FamilyRecord = { version: 1, family, seq: existing?.seq ?? 0, pid: started, heads: [], slices: [], fronts: [] };
      if (existing && (existing.heads.length || existing.fronts.length)) {
        // its daemon died: the record lists what it held, so a new daemon opens it all again
        log(`family ${family}: storage daemon ${existing.pid} is gone; reopening its disks from ${dir}`);
        Object.assign(record, { heads: existing.heads, slices: existing.slices, fronts: existing.fronts });
        await reopenFamily(qmp, record, { familySocket, log });
      }
      writeRecord(dir, record);
      log(`family ${family}: storage daemon ${started} started`);
      return new DiskFamily(family, stateDir, record, qmp, log);
    }, log);
  }

  heads(): Head[] {
    return structuredClone(this.record.heads);
  }

  slices(fork?: string): Slice[] {
    return structuredClone(this.record.slices.filter((s) => fork === undefined || s.fork === fork));
  }

  fronts(): Front[] {
    return structuredClone(this.record.fronts);
  }

  get pid(): number {
    return this.record.pid;
  }

  /**
   * A parent's disk: its image (raw or qcow2) becomes the base of a head the parent writes,
   * exported writable on the family's unix socket as `<vm>/<disk>`.
   */
  addParentDisk(o: { vm: string; disk: string; image: string; format?: 'raw' | 'qcow2' }): Promise<Head> {
    return this.serial(async () => {
      const vm = checkName('VM', o.vm);
      const disk = checkName('disk', o.disk);
      this.refuseHead(vm, disk);
      const format = o.format ?? (await this.imageFormat(o.image));
      const n = this.next();
      const base: Base = { kind: 'image', node: `img${n}`, fileNode: `img${n}f`, image: o.image, format };
      return Undo.guard(async (undo) => {
        try {
          await addFormatNode(this.qmp, undo, { node: base.node, fileNode: base.fileNode, filename: o.image, driver: format });
        } catch (e) {
          throw classify(e, `opening ${vm}'s disk ${disk} (${o.image})`);
        }
        const head: Head = { vm, disk, kind: 'parent', export: `${vm}/${disk}`, exportId: `x${n}`, base, layers: [], sizeBytes: await nodeSize(this.qmp, base.node), createdAt: new Date().toISOString() };
        await addExport(this.qmp, undo, { id: head.exportId, node: base.node, name: head.export, writable: true });
        this.commit((r) => r.heads.push(head));
        return structuredClone(head);
      }, this.log).catch((e) => {
        throw classify(e, `adding ${vm}'s disk ${disk}`);
      });
    });
  }

  /**
   * Makes the new overlays of a coming freeze (files and nodes) while the VM still runs, so that
   * freeze() itself mostly switches the VM onto them (5 to 11 ms here, against 17 to 31 ms
   * unprepared: docs/disks.md).
   * Optional: freeze() prepares what was not prepared.
   */
  prepareFreeze(o: { fork: string; vm: string; disks?: string[] }): Promise<void> {
    return this.serial(async () => {
      await this.dropPrepared(o.fork);
      this.prepared.set(o.fork, await this.prepare(o));
    });
  }

  /** Takes back a prepared freeze that will not happen (a fork that failed before its freeze). */
  abandonFreeze(fork: string): Promise<void> {
    return this.serial(() => this.dropPrepared(fork));
  }

  /**
   * Freezes a VM's disks at a fork (the caller has quiesced the VM): a fresh overlay goes on
   * top of each active node in one QMP transaction; the old active nodes become read-only
   * slices, exported on the unix socket for the fork's front. Works the same on a clone (a
   * fork of a clone freezes its overlay).
   *
   * Once the transaction is in, the new overlays are the VM's disks: a failure after it leaves
   * the VM on its new layers, with the slices recorded but not exported.
   */
  freeze(o: { fork: string; vm: string; disks?: string[] }): Promise<Slice[]> {
    return this.serial(async () => {
      const fork = checkName('fork', o.fork);
      let p = this.prepared.get(fork);
      const wanted = this.headsOf(o).map((h) => h.export).join(' ');
      if (p && (p.fresh.map((f) => f.head.export).join(' ') !== wanted || p.fresh.some((f) => f.old !== activeNode(f.head)))) {
        await this.dropPrepared(fork); // prepared for other disks, or they have moved on since
        p = undefined;
      }
      p ??= await this.prepare(o);
      this.prepared.delete(fork);
      const { fresh, undo } = p;
      try {
        await this.qmp.execute('transaction', { actions: fresh.map((f) => ({ type: 'blockdev-snapshot', data: { node: f.old, overlay: f.layer.node } })) });
      } catch (e) {
        const left = await undo.run(this.log);
        throw classify(e, `freezing ${o.vm}'s disks for fork ${fork}${left.length ? ` (and undoing it failed: ${left.join('; ')})` : ''}`);
      }
      // The VM now writes to the new overlays; record that before anything else can fail.
      const slices: Slice[] = fresh.map(({ head, layer, old }) => {
        const n = this.record.slices.filter((s) => s.vm === head.vm && s.disk === head.disk).length + 1;
        const file = head.layers.at(-1)?.file ?? (head.base.kind === 'image' ? head.base.image : `nbd://${head.base.host}:${head.base.port}/${head.base.export}`);
        head.layers.push(layer);
        return { fork, vm: head.vm, disk: head.disk, n, node: old, file, sizeBytes: head.sizeBytes, frozenAt: new Date().toISOString() };
      });
      this.record.slices.push(...slices);
      this.save();
      for (const s of slices) {
        const head = fresh.find((f) => f.head.vm === s.vm && f.head.disk === s.disk)!.head;
        await this.makeReadOnly(head, s.node);
        const id = `x${this.next()}`;
        try {
          await addExport(this.qmp, new Undo(), { id, node: s.node, name: `slice/${fork}/${s.vm}/${s.disk}`, writable: false });
        } catch (e) {
          this.save();
          throw classify(e, `exporting slice ${s.n} of ${head.export} for fork ${fork}`);
        }
        s.export = `slice/${fork}/${s.vm}/${s.disk}`;
        s.exportId = id;
        this.save();
      }
      return structuredClone(slices);
    });
  }

  /**
   * Exports a frozen fork's slices over TCP at host:port (0: a free port) with a new TLS PSK of
   * the fork's own, through a front daemon. Give the result (key included) to the fork's clones.
   */
  exportFork(o: { fork: string; host: string; port?: number }): Promise<ForkExport> {
    return this.serial(async () => {
      const slices = this.record.slices.filter((s) => s.fork === o.fork && !s.released);
      if (!slices.length) throw new DiskError('not-found', `family ${this.family} has no frozen slice of fork ${o.fork}`);
      const unexported = slices.find((s) => !s.export);
      if (unexported) throw new DiskError('not-found', `slice ${unexported.n} of ${unexported.vm}/${unexported.disk} (fork ${o.fork}) was not exported at the freeze`);
      if (this.record.fronts.some((f) => f.fork === o.fork)) throw new DiskError('exists', `fork ${o.fork} is exported already`);
      const psk = newPsk(o.fork);
      const front = await Undo.guard(async (undo) => {
        const f = await startFront(undo, {
          fork: o.fork, dir: join(this.frontsDir, o.fork), pskDir: join(privateDir(this.pskRoot), `front-${o.fork}`), psk,
          familySocket: this.nbdSocket, slices, host: o.host, port: o.port ?? 0,
        });
        this.commit((r) => r.fronts.push(f));
        return f;
      }, this.log).catch((e) => {
        throw classify(e, `exporting fork ${o.fork} on ${o.host}:${o.port ?? 0}`);
      });
      return {
        fork: o.fork, host: front.host, port: front.port, psk,
        exports: front.exports.map((e) => ({ ...e, sizeBytes: slices.find((s) => s.vm === e.vm && s.disk === e.disk)!.sizeBytes })),
      };
    });
  }

  /**
   * Ends a fork's export: stops its front (its clients are cut), removes its key and the
   * slices' exports. The slices' nodes stay under the VM's later layers.
   */
  releaseFork(fork: string): Promise<void> {
    return this.serial(async () => {
      const front = this.record.fronts.find((f) => f.fork === fork);
      const slices = this.record.slices.filter((s) => s.fork === fork && !s.released);
      const stillServing = await stopSliceServers(this.dir, fork); // before their slices' exports go
      if (!front && !slices.length) throw new DiskError('not-found', `family ${this.family} exports no fork ${fork}`);
      if (stillServing.length) this.log(stillServing.join('; '));
      if (front) {
        await stopFront(front);
        this.record.fronts = this.record.fronts.filter((f) => f !== front);
        this.save();
      }
      for (const s of slices) {
        if (s.exportId) await removeExport(this.qmp, s.exportId);
        delete s.export;
        delete s.exportId;
        s.released = true;
        this.save();
      }
    });
  }

  /**
   * A clone's disk: the fork's slice read over NBD with the fork's key, a fresh sparse qcow2
   * overlay on it, exported writable on the family's unix socket as `<vm>/<disk>`.
   */
  addCloneDisk(o: { vm: string; disk: string; source: CloneSource }): Promise<Head> {
    return this.serial(async () => {
      const vm = checkName('VM', o.vm);
      const disk = checkName('disk', o.disk);
      const src = o.source;
      this.refuseHead(vm, disk);
      if (src.psk.identity !== pskIdentity(src.fork)) {
        // a key opens only its own fork's front: one fork's key given for another is a mix-up, refused before anything is made
        throw new DiskError('wrong-psk', `opening export ${src.export} of fork ${src.fork}: the key given is for identity ${src.psk.identity}, not fork ${src.fork}'s (${pskIdentity(src.fork)})`);
      }
      mkdirSync(this.overlayDir, { recursive: true, mode: 0o700 });
      const n = this.next();
      const base: Base = {
        kind: 'nbd', node: `nbd${n}`, fork: checkName('fork', src.fork), host: src.host, port: src.port, export: src.export,
        identity: src.psk.identity, pskDir: join(this.pskRoot, `clone-${n}`), credsId: `psk${n}`, ...(src.socket ? { socket: src.socket } : {}),
      };
      const layer: Layer = { node: `ov${n}`, fileNode: `ov${n}f`, file: join(this.overlayDir, `${vm}.${disk}.${n}.qcow2`) };
      return Undo.guard(async (undo) => {
        if (!base.socket) {
          privateDir(this.pskRoot);
          writePskDir(base.pskDir, src.psk);
          undo.push(`remove ${base.pskDir}`, () => rmSync(base.pskDir, { recursive: true, force: true }));
          await addPskCreds(this.qmp, undo, { id: base.credsId, endpoint: 'client', dir: base.pskDir, identity: src.psk.identity });
        }
        await addForkNode(this.qmp, undo, base);
        const sizeBytes = await nodeSize(this.qmp, base.node);
        await createOverlay(layer.file, sizeBytes);
        undo.push(`remove ${layer.file}`, () => unlinkSync(layer.file));
        try {
          await addFormatNode(this.qmp, undo, { node: layer.node, fileNode: layer.fileNode, filename: layer.file, driver: 'qcow2', backing: base.node });
        } catch (e) {
          throw classify(e, `opening ${vm}'s overlay ${layer.file}`);
        }
        const head: Head = { vm, disk, kind: 'clone', export: `${vm}/${disk}`, exportId: `x${n}`, base, layers: [layer], sizeBytes, createdAt: new Date().toISOString() };
        await addExport(this.qmp, undo, { id: head.exportId, node: layer.node, name: head.export, writable: true });
        this.commit((r) => r.heads.push(head));
        return structuredClone(head);
      }, this.log).catch((e) => {
        throw classify(e, `adding clone ${vm}'s disk ${disk}`);
      });
    });
  }

  /**
   * Removes a VM's disks from the family. A clone's overlays are deleted (clones are
   * ephemeral); a parent's image and overlays (its writes since its first fork) are kept and
   * returned. Refused while a fork of the VM is still exported.
   */
  removeVm(vm: string): Promise<{ kept: string[]; deleted: string[] }> {
    return this.serial(async () => {
      const heads = this.record.heads.filter((h) => h.vm === vm);
      if (!heads.length) throw new DiskError('not-found', `family ${this.family} has no disk of VM ${vm} on this host`);
      const live = this.record.slices.find((s) => s.vm === vm && !s.released);
      if (live) throw new DiskError('in-use', `fork ${live.fork} of ${vm} is still exported (release it first)`);
      for (const [fork, p] of this.prepared) if (p.fresh.some((f) => f.head.vm === vm)) await this.dropPrepared(fork);
      const kept: string[] = [];
      const deleted: string[] = [];
      const left: string[] = [];
      for (const head of heads) {
        const undo = new Undo();
        // a head its relaunched daemon could not open (head.fault) has nothing in the graph
        const inGraph = !head.fault;
        // teardown in the order QEMU needs it: export, overlays top down, base, its key
        undo.push(`remove the base of ${head.export}`, async () => {
          if (head.base.kind === 'image') {
            if (!inGraph) return;
            await this.qmp.execute('blockdev-del', { 'node-name': head.base.node });
            await this.qmp.execute('blockdev-del', { 'node-name': head.base.fileNode });
          } else {
            if (inGraph) {
              await this.qmp.execute('blockdev-del', { 'node-name': head.base.node });
              if (!head.base.socket) await this.qmp.execute('object-del', { id: head.base.credsId });
            }
            rmSync(head.base.pskDir, { recursive: true, force: true });
          }
        });
        for (const l of inGraph ? head.layers : []) {
          undo.push(`delete layer ${l.node}`, async () => {
            await this.qmp.execute('blockdev-del', { 'node-name': l.node });
            await this.qmp.execute('blockdev-del', { 'node-name': l.fileNode });
          });
        }
        if (inGraph) undo.push(`block-export-del ${head.exportId}`, () => removeExport(this.qmp, head.exportId));
        left.push(...(await undo.run(this.log)));
        const files = head.layers.map((l) => l.file);
        if (head.kind === 'clone') {
          for (const f of files) rmSync(f, { force: true });
          deleted.push(...files);
        } else {
          kept.push(...(head.base.kind === 'image' ? [head.base.image] : []), ...files);
        }
        this.record.heads = this.record.heads.filter((h) => h !== head);
        this.record.slices = this.record.slices.filter((s) => !(s.vm === head.vm && s.disk === head.disk));
        this.save();
      }
      // its overlays read them no more: a backing of a fork this was the host's last clone of stops
      left.push(...(await releaseBackings(this.dir, vm)));
      if (left.length) throw new DiskError('qemu', `removing ${vm}'s disks left: ${left.join('; ')}`);
      return { kept, deleted };
    });
  }

  /**
   * `qemu-img check` of every frozen overlay (slices no one writes any more), plus the nodes
   * QEMU itself found corrupt since this handle was opened.
   */
  check(): Promise<(ImageCheck & { vm: string; disk: string; fork: string })[]> {
    return this.serial(async () => {
      const out = await checkSlices(this.stateDir, this.family);
      for (const c of this.corruptions) {
        const head = this.record.heads.find((h) => h.layers.some((l) => l.node === c.node));
        out.push({ file: head?.layers.find((l) => l.node === c.node)?.file ?? c.node, ok: false, corruptions: 1, leaks: 0, checkErrors: 0, detail: `QEMU: ${c.message}`, vm: head?.vm ?? '?', disk: head?.disk ?? '?', fork: '' });
      }
      return out;
    });
  }

  /** Free space where overlays grow, and what each head's overlays hold. */
  usage(): Promise<{ freeBytes: number; heads: { vm: string; disk: string; allocatedBytes: number }[] }> {
    return this.serial(async () => {
      mkdirSync(this.overlayDir, { recursive: true, mode: 0o700 });
      const nodes = await this.qmp.execute<{ 'node-name': string; image: { 'actual-size'?: number } }[]>('query-named-block-nodes', { flat: true });
      const size = (node: string) => nodes.find((x) => x['node-name'] === node)?.image['actual-size'] ?? 0;
      return {
        freeBytes: freeBytes(this.overlayDir),
        heads: this.record.heads.map((h) => ({ vm: h.vm, disk: h.disk, allocatedBytes: h.layers.reduce((a, l) => a + size(l.fileNode), 0) })),
      };
    });
  }

  /** Disconnects; the family's daemon runs on. */
  close(): void {
    this.qmp.close();
  }

  /**
   * Ends the family on this host: releases its forks, removes clones' and parents' disks (a
   * parent's files are kept and returned), stops its daemon and removes its state.
   */
  async shutdown(): Promise<{ kept: string[] }> {
    for (const fork of [...this.prepared.keys()]) await this.abandonFreeze(fork);
    for (const f of new Set(this.record.slices.filter((s) => !s.released).map((s) => s.fork))) await this.releaseFork(f);
    const kept: string[] = [];
    const vms = [...new Set(this.record.heads.map((h) => h.vm))].sort((a, b) => this.kindOf(a) - this.kindOf(b));
    for (const vm of vms) kept.push(...(await this.removeVm(vm)).kept);
    await stopStorageDaemon(this.record.pid, this.qmp);
    for (const p of [this.daemon.dir, this.pskRoot, this.frontsDir]) rmSync(p, { recursive: true, force: true });
    rmSync(join(this.dir, 'family.json'), { force: true });
    if (!kept.some((f) => f.startsWith(this.overlayDir))) rmSync(this.overlayDir, { recursive: true, force: true });
    if (!kept.some((f) => f.startsWith(this.dir))) rmSync(this.dir, { recursive: true, force: true });
    return { kept };
  }

  private headsOf(o: { vm: string; disks?: string[] }): Head[] {
    const heads = this.record.heads.filter((h) => h.vm === o.vm && (!o.disks || o.disks.includes(h.disk)));
    if (!heads.length) throw new DiskError('not-found', `family ${this.family} has no disk of VM ${o.vm}${o.disks ? ` named ${o.disks.join(', ')}` : ''} on this host`);
    const down = heads.find((h) => h.fault);
    if (down?.fault) throw new DiskError(down.fault.code, `${down.export} is not open: ${down.fault.message}`);
    return heads;
  }

  /** A fresh overlay file and node (no backing yet) for each of the VM's heads. */
  private async prepare(o: { fork: string; vm: string; disks?: string[] }): Promise<Prepared> {
    const fork = checkName('fork', o.fork);
    const heads = this.headsOf(o);
    const taken = this.record.slices.find((s) => s.fork === fork);
    if (taken) throw new DiskError('exists', `fork ${fork} is frozen already (${taken.vm}/${taken.disk})`);
    mkdirSync(this.overlayDir, { recursive: true, mode: 0o700 });
    const undo = new Undo();
    const fresh: Prepared['fresh'] = [];
    await undo.guard(async () => {
      for (const head of heads) {
        const n = this.next();
        const layer: Layer = { node: `ov${n}`, fileNode: `ov${n}f`, file: join(this.overlayDir, `${head.vm}.${head.disk}.${n}.qcow2`) };
        await createOverlay(layer.file, head.sizeBytes);
        undo.push(`remove ${layer.file}`, () => unlinkSync(layer.file));
        try {
          await addFormatNode(this.qmp, undo, { node: layer.node, fileNode: layer.fileNode, filename: layer.file, driver: 'qcow2', backing: null });
        } catch (e) {
          throw classify(e, `opening the new overlay of ${head.export} (${layer.file})`);
        }
        fresh.push({ head, layer, old: activeNode(head) });
      }
    }, this.log);
    return { fresh, undo };
  }

  private async dropPrepared(fork: string): Promise<void> {
    const p = this.prepared.get(fork);
    this.prepared.delete(fork);
    if (p) await p.undo.run(this.log);
  }

  private kindOf(vm: string): number {
    return this.record.heads.find((h) => h.vm === vm)?.kind === 'clone' ? 0 : 1;
  }

  private refuseHead(vm: string, disk: string): void {
    if (this.record.heads.some((h) => h.vm === vm && h.disk === disk)) throw new DiskError('exists', `family ${this.family} has ${vm}/${disk} already`);
  }

  private async imageFormat(image: string): Promise<'raw' | 'qcow2'> {
    const f = (await imageInfo(image)).format;
    if (f !== 'raw' && f !== 'qcow2') throw new DiskError('qemu', `${image} is a ${f} image; a parent's disk must be raw or qcow2`);
    return f;
  }

  /** The old active node, now a backing node, reopened read-only (it keeps its children). */
  private async makeReadOnly(head: Head, node: string): Promise<void> {
    const layer = head.layers.find((l) => l.node === node);
    const base = head.base;
    let options: Record<string, unknown>;
    if (layer) {
      const below = head.layers[head.layers.indexOf(layer) - 1]?.node ?? base.node;
      options = { driver: 'qcow2', 'node-name': node, file: layer.fileNode, backing: below, discard: 'unmap', 'read-only': true };
    } else if (base.kind === 'image') {
      options = { driver: base.format, 'node-name': node, file: base.fileNode, discard: 'unmap', 'read-only': true };
      if (base.format === 'qcow2') options.backing = await backingOf(this.qmp, node);
    } else {
      return; // an NBD base is read-only from the start
    }
    try {
      await this.qmp.execute('blockdev-reopen', { options: [options] });
    } catch (e) {
      // Nothing writes a slice either way (the export is read-only, the overlay only reads its backing).
      this.log(`slice node ${node} of ${head.export} stays read-write: ${(e as Error).message}`);
    }
  }

  private next(): number {
    return ++this.record.seq;
  }

  private save(): void {
    writeRecord(this.dir, this.record);
  }

  /** Applies a change to the record and saves it; if it cannot be saved, the change is taken back. */
  private commit(change: (r: FamilyRecord) => void): void {
    const before = structuredClone(this.record);
    change(this.record);
    try {
      this.save();
    } catch (e) {
      this.record = before;
      throw e;
    }
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function activeNode(h: Head): string {
  return h.layers.at(-1)?.node ?? h.base.node;
}
