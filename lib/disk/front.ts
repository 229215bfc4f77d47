// A fork's front: a qemu-storage-daemon of its own that exports the fork's slices read-only
// over TCP, TLS with the fork's PSK. QEMU runs one NBD server per process, so the family's
// daemon (whose server is the unix socket dom0 attaches to) cannot also serve TLS: the front
// reads each slice from the family's unix socket and re-exports it under the disk's name.
// Only a client holding this fork's key completes the handshake; a name the front does not
// export is refused by QEMU.
import { closeSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { addExport, addNbdNode } from './graph.js';
import { classify, DiskError } from './errors.js';
import { loadAddon } from '../xen/native.js';
import { privateDir, readPskDir, writePskDir, type Psk } from './psk.js';
import { daemonPaths, qemuOptValue, startStorageDaemon, stopStorageDaemon } from './storage-daemon.js';
import type { Front, Slice } from './record.js';
import { Undo } from './undo.js';

export interface FrontStart {
  fork: string;
  /** the front's directory (QMP sockets, pid, log) */
  dir: string;
  /** where its key directory goes (inside the family's private psk directory) */
  pskDir: string;
  psk: Psk;
  /** the family daemon's NBD unix socket */
  familySocket: string;
  slices: Slice[];
  host: string;
  /** 0: a free port */
  port: number;
}

/** Starts a fork's front; every step is recorded in `undo`, down to the process. */
export async function startFront(undo: Undo, o: FrontStart): Promise<Front> {
  const paths = daemonPaths(o.dir);
  privateDir(join(o.pskDir, '..'));
  writePskDir(o.pskDir, o.psk, { server: true });
  undo.push(`remove ${o.pskDir}`, () => rmSync(o.pskDir, { recursive: true, force: true }));
  undo.push(`remove ${o.dir}`, () => rmSync(o.dir, { recursive: true, force: true }));
  const listener = listenFront(o.fork, o.host, o.port);
  let started: Awaited<ReturnType<typeof startStorageDaemon>>;
  try {
    // The key and the listening socket are the daemon's from its start: QMP cannot hand it a descriptor
    // without SCM_RIGHTS, which node:net does not send.
    started = await startStorageDaemon(paths, {
      args: ['--object', `tls-creds-psk,id=psk,endpoint=server,dir=${qemuOptValue(o.pskDir)}`, '--nbd-server', 'addr.type=fd,addr.str=3,tls-creds=psk'],
      fds: [listener.fd],
    });
  } finally {
    closeSync(listener.fd);
  }
  const { pid, qmp } = started;
  const port = listener.port;
  undo.push(`stop front of fork ${o.fork} (pid ${pid})`, () => stopStorageDaemon(pid));
  try {
    // The front's own objects die with its process: only the process is undone.
    const inner = new Undo();
    const exports: Front['exports'] = [];
    for (const [i, s] of o.slices.entries()) {
      if (!s.export) throw new Error(`slice ${s.fork}/${s.vm}/${s.disk} has no export`);
      await addNbdNode(qmp, inner, { node: `s${i}`, server: { type: 'unix', path: o.familySocket }, export: s.export });
      exports.push({ vm: s.vm, disk: s.disk, name: s.disk });
    }
    for (const [i, e] of exports.entries()) await addExport(qmp, inner, { id: `e${i}`, node: `s${i}`, name: e.name, writable: false });
    return { fork: o.fork, pid, host: o.host, port, identity: o.psk.identity, dir: o.dir, pskDir: o.pskDir, exports };
  } catch (e) {
    throw classify(e, `exporting fork ${o.fork} on ${o.host}:${o.port}`);
  } finally {
    qmp.close();
  }
}

/**
 * The front's listening socket, made here with TCP_NODELAY so that the connections QEMU accepts
 * inherit it: QEMU's NBD server sets it only from 8.0, and on Debian 12's 7.2 every TLS record of a
 * reply after the first waited for the client's delayed ACK (45 ms per 4 KiB read; 0.2 ms with it,
 * docs/disks.md). Port 0 takes a free port.
 */
function listenFront(fork: string, host: string, port: number): { fd: number; port: number } {
  try {
    return loadAddon().listenTcp(host, port, 64);
  } catch (e) {
    throw new DiskError('cannot-listen', `exporting fork ${fork} on ${host}:${port}: cannot listen: ${(e as Error).message}`, { cause: e });
  }
}

/** Stops a front and removes its key and directory. */
export async function stopFront(f: Front): Promise<void> {
  await stopStorageDaemon(f.pid);
  rmSync(f.pskDir, { recursive: true, force: true });
  rmSync(f.dir, { recursive: true, force: true });
}

/**
 * Starts a dead front again where it was (its family relaunched after both died): the same
 * address and key, so the clones' NBD nodes reconnect to it (NBD_RECONNECT_DELAY_S in graph.ts).
 */
export async function restartFront(f: Front, familySocket: string, slices: Slice[]): Promise<Front> {
  const psk = readPskDir(f.pskDir);
  rmSync(f.pskDir, { recursive: true, force: true });
  try {
    return await Undo.guard((undo) => startFront(undo, { fork: f.fork, dir: f.dir, pskDir: f.pskDir, psk, familySocket, slices, host: f.host, port: f.port }));
  } catch (e) {
    if (!existsSync(f.pskDir)) writePskDir(f.pskDir, psk, { server: true }); // the key stays for another try
    throw e;
  }
}
