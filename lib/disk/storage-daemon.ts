// Starting and stopping a qemu-storage-daemon (QSD): detached, so it outlives the command that
// started it, with its QMP monitors on unix sockets in a private directory, its pid in a file
// and its output in a log. Everything else is configured over QMP, whose errors name the command.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiskError } from './errors.js';
import { QmpClient } from './qmp.js';

export const QSD = process.env.SNOWFLOCK_QSD ?? 'qemu-storage-daemon';

export interface DaemonPaths {
  /** the daemon's directory (0700) */
  dir: string;
  /** the owner's QMP monitor */
  qmp: string;
  /** a second monitor for read-only queries (`snowflock disk`), so they do not wait for the owner */
  query: string;
  pidFile: string;
  log: string;
}

export function daemonPaths(dir: string): DaemonPaths {
  return { dir, qmp: join(dir, 'qmp.sock'), query: join(dir, 'query.sock'), pidFile: join(dir, 'qsd.pid'), log: join(dir, 'qsd.log') };
}

/** The daemon's pid if its pid file names a live qemu-storage-daemon serving this directory. */
export function runningDaemon(p: DaemonPaths): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(p.pidFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/\) Z /.test(stat)) return undefined;
    return cmdline.some((a) => a.includes(p.qmp)) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export interface StartOptions {
  timeoutMs?: number;
  /** more command-line options, after the monitors (QEMU reads them before any QMP command) */
  args?: string[];
  /** descriptors the daemon inherits as fd 3, 4, ... (the caller still closes its own) */
  fds?: number[];
}

/** A value inside a QEMU option string: QEMU's options split at commas, and ",," is a comma. */
export function qemuOptValue(v: string): string {
  return v.replaceAll(',', ',,');
}

/**
 * Starts a QSD with its two monitors and `o.args`; resolves once its pid file is written (QSD writes it
 * after its monitors listen) and the owner's monitor answers.
 */
export async function startStorageDaemon(p: DaemonPaths, o: StartOptions = {}): Promise<{ pid: number; qmp: QmpClient }> {
  mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  for (const sock of [p.qmp, p.query]) {
    if (Buffer.byteLength(sock) > 107) throw new DiskError('bad-name', `socket path ${sock} is longer than a unix socket allows (107 bytes); use a shorter --state-dir`);
  }
  const args = [
    '--chardev', `socket,id=qmp,path=${p.qmp},server=on,wait=off`, '--monitor', 'chardev=qmp',
    '--chardev', `socket,id=query,path=${p.query},server=on,wait=off`, '--monitor', 'chardev=query',
    '--pidfile', p.pidFile,
    ...(o.args ?? []),
  ];
  const fd = openSync(p.log, 'a', 0o600);
  const child = spawn(QSD, args, { detached: true, stdio: ['ignore', fd, fd, ...(o.fds ?? [])] });
  closeSync(fd);
  child.unref();
  let exited: string | undefined;
  let spawnError: Error | undefined;
  child.once('error', (e) => (spawnError = e));
  child.once('exit', (code, signal) => (exited = signal ? `signal ${signal}` : `code ${code}`));
  const deadline = Date.now() + (o.timeoutMs ?? 15_000);
  for (;;) {
    if (spawnError) throw new DiskError('no-storage-daemon', `cannot start ${QSD}: ${spawnError.message} (apt-get install qemu-system-common)`);
    if (exited) throw new DiskError('no-storage-daemon', `${QSD} exited (${exited}) at start: ${tail(p.log)}`);
    if (child.pid !== undefined && existsSync(p.pidFile) && readFileSync(p.pidFile, 'utf8').trim() === String(child.pid)) break;
    if (Date.now() > deadline) {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
      throw new DiskError('no-storage-daemon', `${QSD} did not start in time: ${tail(p.log)}`);
    }
    await sleep(20);
  }
  try {
    return { pid: child.pid!, qmp: await QmpClient.connect(p.qmp) };
  } catch (e) {
    process.kill(child.pid!, 'SIGKILL');
    throw e;
  }
}

/** Ends a daemon this family started: `quit` if a monitor is given, else SIGTERM; SIGKILL after 5 s. */
export async function stopStorageDaemon(pid: number, qmp?: QmpClient): Promise<void> {
  if (qmp && !qmp.closed) {
    try {
      await qmp.execute('quit', undefined, { timeoutMs: 5000 });
    } catch {
      /* the connection may close before the answer */
    }
    qmp.close();
  } else {
    signal(pid, 'SIGTERM');
  }
  const deadline = Date.now() + 5000;
  while (alive(pid)) {
    if (Date.now() > deadline) {
      signal(pid, 'SIGKILL');
      await sleep(50);
      if (!alive(pid)) return;
      throw new Error(`qemu-storage-daemon ${pid} did not exit`);
    }
    await sleep(20);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

function tail(log: string): string {
  try {
    return readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ') || 'no output';
  } catch {
    return 'no log';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
