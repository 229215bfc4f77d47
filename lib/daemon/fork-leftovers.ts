/**
 * What a capture leaves running on the parent's host: the fork's memserver (a detached process)
 * and its directory, which holds a copy of the parent's whole memory. A fork that goes well
 * needs both until its clones are done (the memserver then removes the directory itself); a fork
 * that fails must not leave them, so discard() stops the memserver and removes the directory.
 */
import { readFileSync, rmSync } from 'node:fs';
import { processAlive } from '../memtap/spawn.js';

const STOP_WAIT_MS = 3000;

export class ForkLeftovers {
  private readonly forks = new Map<string, { pid: number; dir: string }>();

  started(fork: string, pid: number, dir: string): void {
    for (const [f, l] of this.forks) if (!processAlive(l.pid)) this.forks.delete(f); // finished on their own
    this.forks.set(fork, { pid, dir });
  }

  /** Idempotent; a fork this host did not capture is nothing to discard. */
  async discard(fork: string): Promise<void> {
    const l = this.forks.get(fork);
    if (!l) return;
    this.forks.delete(fork);
    if (ownsDir(l.pid, l.dir)) await stop(l.pid);
    rmSync(l.dir, { recursive: true, force: true });
  }
}

/** The pid is still that memserver (its command line names the fork's directory), not a reused pid. */
function ownsDir(pid: number, dir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

async function stop(pid: number): Promise<void> {
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      /* gone */
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + STOP_WAIT_MS;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (processAlive(pid)) signal('SIGKILL');
}
