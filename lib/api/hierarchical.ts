/**
 * Hierarchical cloning: process fork follows VM fork. A clone gets as many vCPUs as its parent,
 * but VM fork leaves it with one process doing the work: the one that called sf_clone. With a
 * hierarchical ticket, the library fills the other vCPUs by starting vcpus - 1 worker processes
 * in each child right after sf_clone returns there, and sf_exit waits for them, so the clone is
 * not destroyed under its workers. Each worker learns its place from its environment:
 *   SF_VMID     the clone's vmid (1..m)
 *   SF_WORKER   this worker's number (1..SF_WORKERS; the calling process is worker 0)
 *   SF_WORKERS  how many workers were started
 * Node cannot fork() a running process, so a worker is a module started from the top.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface WorkerSpec {
  /** The module each worker runs (path or file: URL). */
  module: string | URL;
  args?: string[];
}

export interface WorkerExit {
  worker: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WorkerGroup {
  readonly count: number;
  /** Resolves when every worker has exited, with how each ended. */
  readonly done: Promise<WorkerExit[]>;
}

export function startWorkers(spec: WorkerSpec, clone: { vmid: number; vcpus: number }, env: NodeJS.ProcessEnv = process.env): WorkerGroup {
  const count = Math.max(0, clone.vcpus - 1);
  const module = spec.module instanceof URL ? fileURLToPath(spec.module) : spec.module;
  const exits = Array.from({ length: count }, (_, i) => {
    const worker = i + 1;
    const child = fork(module, spec.args ?? [], {
      env: { ...env, SF_VMID: String(clone.vmid), SF_WORKER: String(worker), SF_WORKERS: String(count) },
      stdio: 'inherit',
    });
    return new Promise<WorkerExit>((resolve) => {
      child.on('error', () => resolve({ worker, code: null, signal: null }));
      child.on('exit', (code, signal) => resolve({ worker, code, signal }));
    });
  });
  return { count, done: Promise.all(exits) };
}
