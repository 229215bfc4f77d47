/** Runs one external command with a deadline and hands back everything it said. */
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { BackendError } from './errors.js';

export interface CommandResult {
  /** null when the command was killed by a signal (our timeout or another) rather than exiting. */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Never rejects because the command failed; only when it could not be started at all. */
export type CommandRunner = (file: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number) => Promise<CommandResult>;

export const runCommand: CommandRunner = (file, args, env, timeoutMs) =>
  new Promise((resolve, reject) => {
    // cwd: batch systems record the submitter's directory as the job's working directory; keep ours out of it.
    execFile(file, args, { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 8 << 20, cwd: tmpdir(), encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve({ exitCode: 0, stdout, stderr, timedOut: false });
      const e = err as Error & { code?: number | string; killed?: boolean; signal?: string | null };
      if (typeof e.code === 'number') return resolve({ exitCode: e.code, stdout, stderr, timedOut: false });
      // killed: by us, on the deadline; a signal from elsewhere is reported as a kill all the same.
      if (e.signal) return resolve({ exitCode: null, stdout, stderr, timedOut: e.killed === true });
      reject(err);
    });
  });

/** A batch-system command that ran and failed: names the command line, how it ended, and what it said. */
export class BatchCommandError extends BackendError {
  readonly exitCode: number | null;
  constructor(readonly command: readonly string[], result: CommandResult, said: string) {
    const how = result.timedOut ? 'timed out' : result.exitCode === null ? 'was killed' : `failed (exit ${result.exitCode})`;
    super(`\`${command.join(' ')}\` ${how}${said ? `: ${said}` : ''}`);
    this.exitCode = result.exitCode;
  }
}
