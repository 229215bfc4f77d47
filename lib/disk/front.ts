// A fork's front: a qemu-storage-daemon of its own that exports the fork's slices read-only
// over TCP, TLS with the fork's PSK. QEMU runs one NBD server per process, so the family's
// daemon (whose server is the unix socket dom0 attaches to) cannot also serve TLS: the front
// reads each slice from the family's unix socket and re-exports it under the disk's name.
// Only a client holding this fork's key completes the handshake; a name the front does not
// export is refused by QEMU.
import { createServer } from 'node:net';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { addExport, addNbdNode, addPskCreds } from './graph.js';
import { classify } from './errors.js';
import { privateDir, readPskDir, writePskDir, type Psk } from './psk.js';
import { daemonPaths, startStorageDaemon, stopStorageDaemon } from './storage-daemon.js';
import type { Front, Slice } from './record.js';
import { QmpError, type QmpClient } from './qmp.js';
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
  const { pid, qmp } = await startStorageDaemon(paths);
  undo.push(`stop front of fork ${o.fork} (pid ${pid})`, () => stopStorageDaemon(pid));
  try {
    // The front's own objects die with its process: only the process is undone.
    const inner = new Undo();
    await addPskCreds(qmp, inner, { id: 'psk', endpoint: 'server', dir: o.pskDir });
    const exports: Front['exports'] = [];
    for (const [i, s] of o.slices.entries()) {
      if (!s.export) throw new Error(`slice ${s.fork}/${s.vm}/${s.disk} has no export`);
      await addNbdNode(qmp, inner, { node: `s${i}`, server: { type: 'unix', path: o.familySocket }, export: s.export });
      exports.push({ vm: s.vm, disk: s.disk, name: s.disk });
    }
    const port = await listen(qmp, o.host, o.port);
    for (const [i, e] of exports.entries()) await addExport(qmp, inner, { id: `e${i}`, node: `s${i}`, name: e.name, writable: false });
    return { fork: o.fork, pid, host: o.host, port, identity: o.psk.identity, dir: o.dir, pskDir: o.pskDir, exports };
  } catch (e) {
    throw classify(e, `exporting fork ${o.fork} on ${o.host}:${o.port}`);
  } finally {
    qmp.close();
  }
}

/** nbd-server-start on host:port; for port 0 a free port is found (tried again if taken meanwhile). */
async function listen(qmp: QmpClient, host: string, port: number): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const p = port || (await freePort(host));
    try {
      await qmp.execute('nbd-server-start', { addr: { type: 'inet', data: { host, port: String(p) } }, 'tls-creds': 'psk' });
      return p;
    } catch (e) {
      if (port || attempt >= 4 || !(e instanceof QmpError && /in use/i.test(e.desc))) throw e;
    }
  }
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host, port: 0 }, () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
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
