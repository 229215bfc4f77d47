/**
 * Runs cli-worker.js in a network namespace and speaks its line protocol:
 * JSON events on stdout, "go" on stdin. For the host tests and the benchmark.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const WORKER_SCRIPT = fileURLToPath(new URL('./cli-worker.js', import.meta.url));

export interface WorkerEvent {
  event: string;
  [k: string]: unknown;
}

export class WorkerProcess {
  readonly child: ChildProcess;
  readonly events: WorkerEvent[] = [];
  stderr = '';
  private readonly listeners = new Set<() => void>();
  exitCode: number | null = null;
  private exited = false;

  /**
   * @param script the compiled worker; defaults to the cli-worker.js beside
   * this file, which is only right when running from dist/.
   */
  constructor(ns: string | null, args: string[], script = WORKER_SCRIPT) {
    const argv = [process.execPath, script, ...args];
    this.child = ns === null
      ? spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as WorkerEvent);
      } catch {
        this.stderr += `(stdout) ${line}\n`;
      }
      this.notify();
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      // Keep the tail only: a chatty worker must not grow the harness without bound.
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    this.child.stdin!.on('error', () => undefined); // the worker may exit before we write
    // 'close', not 'exit': the last stdout lines may still be in flight at exit.
    this.child.on('close', (code) => {
      this.exitCode = code;
      this.exited = true;
      this.notify();
    });
  }

  /** The first event with this name; rejects if the worker exits or reports an error first. */
  waitFor(name: string, timeoutMs = 120_000): Promise<WorkerEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`worker: no "${name}" within ${timeoutMs} ms\n${this.stderr}`));
      }, timeoutMs);
      const check = (): void => {
        const hit = this.events.find((e) => e.event === name);
        const err = this.events.find((e) => e.event === 'error');
        if (!hit && !err && !this.exited) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        if (hit) resolve(hit);
        else reject(new Error(`worker failed before "${name}": ${JSON.stringify(err ?? { exitCode: this.exitCode })}\n${this.stderr}`));
      };
      this.listeners.add(check);
      check();
    });
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Close stdin (a server then prints its stats and exits) and wait for exit. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.child.stdin!.end();
    if (this.exited) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.kill();
        resolve();
      }, timeoutMs);
      this.child.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}
