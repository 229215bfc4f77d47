// The parent's host side of mcdist in the fork path (docs/disks.md "mcdist for blocks"): one
// slice server (an mcdist-worker `serve`, detached) per exported slice of a fork, beside the
// fork's front, which stays as the fallback. Their pids are recorded under the family's
// directory (`mcdist/serve-<fork>/`), so that whoever ends the fork (DiskFamily.releaseFork, in
// this process or another) stops them.
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSession } from '../mcdist/session.js';
import { startDetachedWorker, stopDetachedWorker } from './detached-worker.js';
import type { SliceSession } from './mcdist-backing.js';

/** How a disk of a fork reaches its clones' hosts. */
export type BlockTransport = 'front' | 'mcdist';

export interface SliceServerResult {
  vm: string;
  disk: string;
  /** the session to hand to the clones' hosts (sealed: it holds the session key), or why the disk reads the front */
  session?: SliceSession;
  fallback?: string;
}

function serveDir(familyDir: string, fork: string): string {
  return join(familyDir, 'mcdist', `serve-${fork}`);
}

/**
 * Starts a slice server for each of `slices` (exported on the family's `nbdSocket` as
 * slice/<fork>/<vm>/<disk>), serving from `host`. A slice whose server cannot serve multicast
 * (the probe on `host` fails, or the worker does not start) gets no server and a `fallback`
 * naming why: its clones read the front.
 */
export async function startSliceServers(o: {
  familyDir: string;
  nbdSocket: string;
  fork: string;
  host: string;
  slices: { vm: string; disk: string; name: string }[];
  script: string;
  log?: (m: string) => void;
}): Promise<SliceServerResult[]> {
  const dir = serveDir(o.familyDir, o.fork);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const out: SliceServerResult[] = [];
  for (const s of o.slices) {
    const base = join(dir, `${s.vm}.${s.disk}`);
    const what = `the mcdist slice server of ${s.vm}/${s.disk} of fork ${o.fork}`;
    try {
      const { ready } = await startDetachedWorker({
        script: o.script, what, pidFile: `${base}.pid`, logFile: `${base}.log`,
        args: ['serve', '--socket', o.nbdSocket, '--export', `slice/${o.fork}/${s.vm}/${s.disk}`, '--name', s.name, '--address', o.host, '--transport', 'auto'],
      });
      const session = ready.descriptor as SliceSession;
      // 'auto' probes multicast on the host's address; a server left with TCP only is no better than the front
      if (decodeSession(session.session).transport !== 'multicast') {
        await stopDetachedWorker(`${base}.pid`);
        out.push({ vm: s.vm, disk: s.disk, fallback: `multicast is not available on ${o.host} (mcdist's probe failed; ${base}.log)` });
      } else {
        out.push({ vm: s.vm, disk: s.disk, session });
      }
    } catch (e) {
      out.push({ vm: s.vm, disk: s.disk, fallback: (e as Error).message });
    }
    if (out.at(-1)!.fallback) o.log?.(`fork ${o.fork}: ${s.vm}/${s.disk} reads the front: ${out.at(-1)!.fallback}`);
  }
  return out;
}

/** Stops every slice server of `fork` and removes their records; returns what could not be stopped. */
export async function stopSliceServers(familyDir: string, fork: string): Promise<string[]> {
  const dir = serveDir(familyDir, fork);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const left: string[] = [];
  for (const n of names.filter((x) => x.endsWith('.pid'))) {
    await stopDetachedWorker(join(dir, n)).catch((e: Error) => left.push(`stopping the slice server ${n}: ${e.message}`));
  }
  if (!left.length) rmSync(dir, { recursive: true, force: true });
  return left;
}
