// An mcdist-worker process (mcdist-worker.ts) started for the fork path: detached, so that it
// outlives the process that started it (`snowflock clone` exits while its clones run), its pid
// recorded in a file so that whoever ends the fork or the last clone stops it, and its stderr in
// a log file beside the pid. The ready line (which may hold a session key) comes over a pipe.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DiskError } from './errors.js';

/** The worker next to this module (dist/lib/disk/mcdist-worker.js once built). */
export function defaultMcdistWorker(): string {
  return fileURLToPath(new URL('./mcdist-worker.js', import.meta.url));
}

export interface DetachedStart {
  script: string;
  args: string[];
  /** written to the worker's stdin as its first line (a descriptor with a key), then stdin ends */
  stdinLine?: string;
  pidFile: string;
  logFile: string;
  /** what the worker is for, in errors */
  what: string;
  timeoutMs?: number;
}

/** Starts the worker and waits for its ready line; on any failure the worker is killed and its pid file removed. */
export async function startDetachedWorker(o: DetachedStart): Promise<{ pid: number; ready: Record<string, unknown> }> {
  const log = openSync(o.logFile, 'a', 0o600);
  const child = spawn(process.execPath, [o.script, ...o.args, '--detached'], { detached: true, stdio: ['pipe', 'pipe', log] });
  closeSync(log);
  const pid = child.pid;
  if (pid === undefined) {
    await new Promise((r) => child.once('error', r));
    throw new DiskError('no-storage-daemon', `starting ${o.what}: ${o.script} could not be run`);
  }
  writeFileSync(o.pidFile, `${pid}\n`, { mode: 0o600 });
  const stdin = child.stdin!;
  const stdout = child.stdout!;
  stdin.on('error', () => undefined);
  stdin.end(o.stdinLine === undefined ? undefined : `${o.stdinLine}\n`);
  const lines = createInterface({ input: stdout });
  let timer: NodeJS.Timeout | undefined;
  try {
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${o.timeoutMs ?? 20_000} ms`)), o.timeoutMs ?? 20_000);
      child.once('exit', (code, signal) => reject(new Error(`it exited (${signal ?? `code ${code}`}) before it was ready`)));
      lines.on('line', (line) => {
        let m: Record<string, unknown>;
        try {
          m = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (m.event === 'ready') resolve(m);
        if (m.event === 'error') reject(new Error(String(m.message)));
      });
    });
    lines.close();
    stdout.destroy();
    child.unref();
    return { pid, ready };
  } catch (e) {
    lines.close();
    child.kill('SIGKILL');
    rmSync(o.pidFile, { force: true });
    throw new DiskError('no-storage-daemon', `starting ${o.what}: ${(e as Error).message} (log: ${o.logFile})`);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether `pid` is an mcdist worker (not a pid the kernel has given to another process since). */
export function isMcdistWorker(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('mcdist-worker');
  } catch {
    return false;
  }
}

export function workerAlive(pidFile: string): boolean {
  const pid = readPid(pidFile);
  return pid !== undefined && isMcdistWorker(pid);
}

function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Stops the worker of `pidFile` (SIGTERM, then SIGKILL after 5 s) and removes the file; a worker already gone is fine. */
export async function stopDetachedWorker(pidFile: string): Promise<void> {
  const pid = readPid(pidFile);
  if (pid !== undefined && isMcdistWorker(pid)) {
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 5000;
    while (isMcdistWorker(pid) && !isZombie(pid)) {
      if (Date.now() > deadline) {
        process.kill(pid, 'SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  rmSync(pidFile, { force: true });
}

/** A worker this process started has exited but is not reaped yet (the kernel keeps its cmdline until then). */
function isZombie(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return true;
  }
}
