// A clone host's side of mcdist in the fork path: ONE backing (an mcdist-worker `back`, detached:
// an mcdist client and the NBD server on a unix socket) per (fork, parent's disk) on this host,
// shared by every clone of that fork here, so that a block one clone fetched is in the cache its
// siblings read. Each clone that uses it is recorded as a file under `users/`; the backing stops
// when its last user goes (DiskFamily.removeVm). All of it lives under the family's directory
// (`mcdist/back-<id>/`: pid, log, nbd.sock, users/), so another process (the hotplug script's
// `snowflock disk detach`) can let go of it too.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDetachedWorker, stopDetachedWorker, workerAlive } from './detached-worker.js';
import type { SliceSession } from './mcdist-backing.js';

/** How long a new backing may take to get block 0 over multicast before the clone reads the front instead. */
export const DEFAULT_JOIN_CHECK_MS = 3000;

export interface BackingRequest {
  familyDir: string;
  fork: string;
  /** the parent's VM and disk the slice is of */
  vm: string;
  disk: string;
  /** the clone that will read it */
  clone: string;
  session: SliceSession;
  script: string;
  checkMs?: number;
  /** the local address to join the group on (the kernel's choice if unset) */
  interfaceAddress?: string;
}

// A short directory name: unix socket paths are limited to 108 bytes, and names may be 64 each.
function backingDir(familyDir: string, fork: string, vm: string, disk: string): string {
  return join(familyDir, 'mcdist', `back-${createHash('sha256').update(`${fork}/${vm}/${disk}`).digest('hex').slice(0, 16)}`);
}

// One change at a time per family directory within this process (other processes are kept out by the family's lock).
const chains = new Map<string, Promise<unknown>>();
function serialized<T>(familyDir: string, body: () => Promise<T>): Promise<T> {
  const run = (chains.get(familyDir) ?? Promise.resolve()).then(body, body);
  chains.set(familyDir, run.catch(() => undefined));
  return run;
}

/**
 * The socket of the fork's backing for this disk, started if this host has none yet (it must
 * have fetched block 0 within `checkMs`), with `clone` recorded as a user. Throws naming why
 * the backing cannot be had (the caller reads the front instead); nothing is left then.
 */
export function acquireBacking(r: BackingRequest): Promise<string> {
  return serialized(r.familyDir, async () => {
    const dir = backingDir(r.familyDir, r.fork, r.vm, r.disk);
    const socket = join(dir, 'nbd.sock');
    if (!workerAlive(join(dir, 'pid')) || !existsSync(socket)) {
      rmSync(dir, { recursive: true, force: true }); // a backing that died: its users read nothing from it any more
      mkdirSync(join(dir, 'users'), { recursive: true, mode: 0o700 });
      writeFileSync(join(dir, 'slice'), `${r.fork} ${r.vm}/${r.disk}\n`, { mode: 0o600 });
      try {
        await startDetachedWorker({
          script: r.script, what: `the mcdist backing of ${r.vm}/${r.disk} of fork ${r.fork}`,
          pidFile: join(dir, 'pid'), logFile: join(dir, 'log'), stdinLine: JSON.stringify(r.session),
          args: ['back', '--descriptor', '-', '--socket', socket, '--transport', 'multicast', '--check-ms', String(r.checkMs ?? DEFAULT_JOIN_CHECK_MS),
            ...(r.interfaceAddress ? ['--interface', r.interfaceAddress] : [])],
        });
      } catch (e) {
        rmSync(dir, { recursive: true, force: true });
        throw e;
      }
    }
    writeFileSync(join(dir, 'users', r.clone), '', { mode: 0o600 });
    return socket;
  });
}

/** Lets go of every backing `clone` used on this host; a backing left without users is stopped. Returns what could not be stopped. */
export function releaseBackings(familyDir: string, clone: string): Promise<string[]> {
  return serialized(familyDir, async () => {
    const root = join(familyDir, 'mcdist');
    let dirs: string[];
    try {
      dirs = readdirSync(root).filter((d) => d.startsWith('back-'));
    } catch {
      return [];
    }
    const left: string[] = [];
    for (const d of dirs) {
      const dir = join(root, d);
      const mine = join(dir, 'users', clone);
      if (!existsSync(mine)) continue;
      rmSync(mine, { force: true });
      if (readdirSync(join(dir, 'users')).length) continue;
      try {
        await stopDetachedWorker(join(dir, 'pid'));
        rmSync(dir, { recursive: true, force: true });
      } catch (e) {
        left.push(`stopping the mcdist backing in ${dir}: ${(e as Error).message}`);
      }
    }
    return left;
  });
}

/** The backings on this host (their directories), for listings and tests. */
export function backingsOf(familyDir: string): string[] {
  try {
    return readdirSync(join(familyDir, 'mcdist')).filter((d) => d.startsWith('back-'));
  } catch {
    return [];
  }
}
