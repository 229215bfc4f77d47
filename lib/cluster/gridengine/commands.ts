/**
 * The Grid Engine commands a ticket needs: qsub (one array job, a holder task per clone slot),
 * qstat (which tasks run, and where), qdel (give back). A holder task runs `sleep infinity` and
 * does nothing else: it only makes Grid Engine set a slot aside. Failures become SgeCommandError
 * naming the command and Grid Engine's own words.
 */
import { join } from 'node:path';
import { BackendError } from '../errors.js';
import { BatchCommandError, runCommand, type CommandResult, type CommandRunner } from '../run.js';
import { isJobGone, parseQstatXml, parseSubmittedJobId, taskId, type SgeJob } from './parse.js';

/** Grid Engine says some errors on stdout (qdel), so both streams are kept. */
export class SgeCommandError extends BatchCommandError {
  override name = 'SgeCommandError';
  readonly output: string;
  constructor(command: readonly string[], result: CommandResult) {
    const output = `${result.stderr}\n${result.stdout}`.trim();
    super(command, result, output);
    this.output = output;
  }
}

export interface SgeCliOptions {
  /** SGE_ROOT and SGE_CELL; default: the environment's, else Debian's /var/lib/gridengine and "default". */
  sgeRoot?: string;
  sgeCell?: string;
  binDir?: string;
  timeoutMs: number;
  runner?: CommandRunner;
}

export class SgeCli {
  private readonly env: NodeJS.ProcessEnv;
  private readonly runner: CommandRunner;

  constructor(private readonly opts: SgeCliOptions) {
    this.env = {
      ...process.env,
      SGE_ROOT: opts.sgeRoot ?? process.env.SGE_ROOT ?? '/var/lib/gridengine',
      SGE_CELL: opts.sgeCell ?? process.env.SGE_CELL ?? 'default',
    };
    this.runner = opts.runner ?? runCommand;
  }

  /**
   * Submits `count` one-slot holders with one qsub: an array job of tasks 1..count (`-t 1-count`),
   * each waiting in the queue until a slot is free. Returns the tasks' ids ("job.task"), in order.
   */
  async submitHolders(o: { name: string; queue?: string; comment: string; count: number }): Promise<string[]> {
    if (!Number.isInteger(o.count) || o.count < 1) throw new RangeError(`holder count must be a positive integer, got ${o.count}`);
    const args = [
      '-terse', '-t', `1-${o.count}`, '-b', 'y', '-o', '/dev/null', '-e', '/dev/null', '-N', o.name, '-ac', `snowflock=${o.comment}`,
      ...(o.queue ? ['-q', o.queue] : []),
      'sleep', 'infinity',
    ];
    const r = await this.run('qsub', args);
    const id = parseSubmittedJobId(r.stdout);
    if (!id) throw new BackendError(`\`qsub ${args.join(' ')}\` succeeded but printed no job id: ${r.stdout.trim()}`);
    return Array.from({ length: o.count }, (_, i) => taskId(id, i + 1));
  }

  /** Every job Grid Engine knows, of every user (the caller picks its own by id). */
  async jobs(): Promise<SgeJob[]> {
    const r = await this.run('qstat', ['-u', '*', '-xml']);
    return parseQstatXml(r.stdout);
  }

  /** Deletes jobs or tasks ("42", "42.3"); ones already gone are not an error. */
  async delete(jobIds: readonly string[]): Promise<void> {
    if (jobIds.length === 0) return;
    try {
      await this.run('qdel', [...jobIds]);
    } catch (e) {
      // qdel fails as a whole when one id is unknown, though it deleted the others: ask per job.
      if (!(e instanceof SgeCommandError && isJobGone(e.output))) throw e;
      if (jobIds.length > 1) for (const id of jobIds) await this.delete([id]);
    }
  }

  private async run(command: string, args: string[]): Promise<CommandResult> {
    const file = this.opts.binDir ? join(this.opts.binDir, command) : command;
    let r: CommandResult;
    try {
      r = await this.runner(file, args, this.env, this.opts.timeoutMs);
    } catch (e) {
      throw new BackendError(`cannot run ${command} (Debian package gridengine-client): ${(e as Error).message}`, { cause: e });
    }
    if (r.exitCode !== 0) throw new SgeCommandError([command, ...args], r);
    return r;
  }
}
