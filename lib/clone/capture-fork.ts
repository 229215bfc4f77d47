// The parent's side of every fork: capture the descriptor and a copy of memory into a fork's
// directory, and start the memserver that feeds the clones from it (one per fork, it exits when
// its clones are done and removes the directory). Used by `snowflock clone` (lib/clone/lazy.ts)
// and the sf_* daemons' Xen backend (lib/daemon/xen-backend.ts).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { XenControl, XenStore } from '../xen/native.js';
import { captureDescriptor, type CaptureResult } from '../descriptor/capture.js';
import { DescriptorError } from '../descriptor/errors.js';
import { encodeDescriptor } from '../descriptor/format.js';
import { startMemServer } from '../memtap/spawn.js';
import { writeTokenFile } from '../memtap/token.js';
import { ForkDisks, type DiskForkExport, type ForkDisksOptions } from './fork-disks.js';

export interface ForkCaptureOptions {
  /** The fork's directory (exists, mode 700): image, descriptor, key and memserver log go here. */
  dir: string;
  /** How many clones the memserver waits for. */
  clones: number;
  /** Keep the parent suspended until the caller's resumeParent() (the daemons' capture → release). */
  keepParentStopped?: boolean;
  /**
   * The address the memserver listens on: the cluster interface's address when clones on other
   * hosts fetch from it (the daemons pass their --advertise address). Default 127.0.0.1: only
   * this host's clones. Never every address unless asked ('0.0.0.0').
   */
  listenHost?: string;
  /** memserver frames unsealed after the handshake (trusted networks only) */
  insecurePlaintext?: boolean;
  progress?: (message: string) => void;
  /**
   * The fork's name for its disk slices (a disk family's fork id, [A-Za-z0-9_.-]); needed when
   * the parent has disk-family disks. Their fronts listen on listenHost.
   */
  fork?: string;
  /** where disk families live on this host */
  diskOptions?: ForkDisksOptions;
}

export interface ForkCapture {
  captured: CaptureResult;
  /** The encoded descriptor, as written to the fork's directory. */
  encoded: Buffer;
  /** The memserver key, also in `tokenFile`. */
  token: string;
  tokenFile: string;
  memserver: { pid: number; port: number; log: string; event: Record<string, unknown> };
  /** the parent's disks frozen for this fork and exported (empty without disks); keys included */
  disks: DiskForkExport[];
}

/**
 * Captures and starts the memserver. If the memserver cannot start, a parent kept stopped is
 * resumed before the error is thrown; the directory is the caller's to remove.
 */
export async function captureFork(xc: XenControl, xs: XenStore, parent: number, o: ForkCaptureOptions): Promise<ForkCapture> {
  if (xc.domainInfo(parent).type === 'pv') {
    throw new DescriptorError(`domain ${parent} is a PV guest: memory on demand needs HAP, which PV domains never have; clone it eagerly (snowflock clone --memory eager)`);
  }
  const tokenFile = join(o.dir, 'token');
  const token = writeTokenFile(tokenFile);
  const image = join(o.dir, 'parent.mem');
  let forkDisks: ForkDisks | undefined;
  const disks = (vbds: ForkDisks['vbds']) => {
    if (!o.fork) throw new DescriptorError(`domain ${parent} has disks, and this fork has no name for their slices`);
    forkDisks = new ForkDisks(o.fork, vbds, { ...o.diskOptions, ...(o.progress ? { log: o.progress } : {}) });
    return forkDisks;
  };
  let captured;
  try {
    captured = await captureDescriptor(xc, xs, parent, {
      memoryImage: image, keepParentStopped: o.keepParentStopped ?? false, ...(o.progress ? { progress: o.progress } : {}), disks,
    });
  } catch (e) {
    throw await abandonDisks(forkDisks, e);
  }
  try {
    // After the parent runs on (unless kept stopped): a front takes a few tenths of a second to start.
    let exported: DiskForkExport[] = [];
    if (forkDisks) {
      o.progress?.('exporting the disks\' slices');
      exported = await forkDisks.exportAll(o.listenHost ?? '127.0.0.1');
      forkDisks.close();
    }
    const encoded = encodeDescriptor(captured.descriptor);
    const descriptorFile = join(o.dir, 'parent.sfd');
    writeFileSync(descriptorFile, encoded);
    o.progress?.('starting the memserver');
    const log = join(o.dir, 'memserver.log');
    const server = await startMemServer({
      descriptor: descriptorFile, image, tokenFile, clones: o.clones, logFile: log, host: o.listenHost ?? '127.0.0.1', removeOnExit: o.dir,
      ...(o.insecurePlaintext ? { insecurePlaintext: true } : {}),
    });
    return { captured, encoded, token, tokenFile, memserver: { pid: server.pid, port: server.port, log, event: server.event }, disks: exported };
  } catch (e) {
    captured.resumeParent();
    throw await abandonDisks(forkDisks, e);
  }
}

/** A failed fork's disks taken back (no slice export, front or prepared overlay stays); the error to throw. */
export async function abandonDisks(forkDisks: ForkDisks | undefined, e: unknown): Promise<unknown> {
  if (!forkDisks) return e;
  const left = await forkDisks.abandon();
  if (left.length && e instanceof Error) e.message += ` (and taking back the disks' freeze failed: ${left.join('; ')})`;
  return e;
}
