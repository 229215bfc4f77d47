// Starting the long-lived processes of a fork (memserver, memtaps) detached from the command
// that forks: they outlive it. Each writes JSON lines to its own log file; the starter
// follows that file until the process says it is ready, fails, or exits.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { forkProcessArgv, type ForkProcess, type MemServerProcessOptions } from './fork-process.js';

export interface Spawned {
  pid: number;
  event: Record<string, unknown>;
}

export async function spawnDetached(p: ForkProcess, logFile: string, ready: string, timeoutMs: number): Promise<Spawned> {
  const what = p.role;
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, forkProcessArgv(p), { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = signal ? `signal ${signal}` : `code ${code}`));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${what}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
    for (const line of lines) {
      let event: Record<string, unknown>;
      try {
        event = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (event.event === ready) return { pid, event };
      if (event.event === 'error') throw new Error(`${what}: ${String(event.message)}`);
    }
    if (exited) throw new Error(`${what} exited (${exited}) before it was ready: ${lines.slice(-3).join(' | ') || 'no output'} (log ${logFile})`);
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      throw new Error(`${what} not ready after ${timeoutMs} ms (log ${logFile})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface MemServerStart extends MemServerProcessOptions {
  logFile: string;
  /** how long it may take to start listening (default 300 s: it scans the image first) */
  timeoutMs?: number;
}

/** Starts a fork's memserver detached; resolves with its pid and port once it listens. */
export async function startMemServer(o: MemServerStart): Promise<{ pid: number; port: number; event: Record<string, unknown> }> {
  const { logFile, timeoutMs, ...options } = o;
  const s = await spawnDetached({ role: 'memserver', options }, logFile, 'listening', timeoutMs ?? 300_000);
  return { pid: s.pid, port: Number(s.event.port), event: s.event };
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
