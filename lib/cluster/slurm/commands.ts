/**
 * The three Slurm commands a ticket needs: salloc (grant), scontrol show job (what was granted),
 * scancel (give back). Each failure becomes a SlurmCommandError naming the command line and
 * Slurm's own stderr; deciding what a failure means is the manager's business.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BackendError } from '../errors.js';
import { isJobGone, parseGrantedJobId, parseJob, type SlurmJob } from './parse.js';
import { BatchCommandError, runCommand, type CommandResult, type CommandRunner } from '../run.js';

export class SlurmCommandError extends BatchCommandError {
  override name = 'SlurmCommandError';
  readonly stderr: string;
  constructor(command: readonly string[], result: CommandResult) {
    super(command, result, result.stderr.trim());
    this.stderr = result.stderr.trim();
  }
}

export interface SlurmCliOptions {
  /** SLURM_CONF for every command; default: whatever the environment says. */
  slurmConf?: string;
  /** Where salloc, scontrol and scancel live; default: PATH. */
  binDir?: string;
  /** Deadline for one command. */
  timeoutMs: number;
  runner?: CommandRunner;
}

export interface AllocationRequest {
  /** Unique per ticket, so an allocation whose job id we never learnt can still be cancelled. */
  jobName: string;
  comment: string;
  minNodes: number;
  maxNodes: number;
  cpusPerNode: number;
  memoryMiBPerNode: number;
  partition?: string;
}

export class SlurmCli {
  private readonly env: NodeJS.ProcessEnv;
  private readonly runner: CommandRunner;

  constructor(private readonly opts: SlurmCliOptions) {
    // A manager running inside a Slurm job must not have its tickets nest in that job:
    // drop the job's SLURM_*/SALLOC_* variables, keep only which cluster to talk to.
    const inherited = Object.fromEntries(Object.entries(process.env)
      .filter(([k]) => k === 'SLURM_CONF' || !(k.startsWith('SLURM_') || k.startsWith('SALLOC_'))));
    this.env = { ...inherited, ...(opts.slurmConf ? { SLURM_CONF: opts.slurmConf } : {}) };
    this.runner = opts.runner ?? runCommand;
  }

  /**
   * salloc without a shell returns as soon as the allocation exists and leaves it in place.
   * -N min-max with --spread-job takes as many free nodes as there are, up to max; without
   * --spread-job Slurm packs the minimum. --immediate: refuse rather than queue when even
   * min nodes are not free now, since a ticket is an answer, not a promise.
   */
  async allocate(a: AllocationRequest): Promise<string> {
    const args = [
      '--no-shell', '--immediate',
      `--nodes=${a.minNodes}-${a.maxNodes}`, '--spread-job',
      `--cpus-per-task=${a.cpusPerNode}`, `--mem=${a.memoryMiBPerNode}`,
      `--job-name=${a.jobName}`, `--comment=${a.comment}`,
      ...(a.partition ? [`--partition=${a.partition}`] : []),
    ];
    const r = await this.run('salloc', args);
    const jobId = parseGrantedJobId(r.stderr);
    if (jobId === null) throw new BackendError(`\`salloc ${args.join(' ')}\` succeeded but did not say which job it granted: ${r.stderr.trim()}`);
    return jobId;
  }

  async showJob(jobId: string): Promise<SlurmJob> {
    const r = await this.run('scontrol', ['--details', '--oneliner', 'show', 'job', jobId]);
    return parseJob(r.stdout);
  }

  /** Cancelling a job that already ended is not an error: the allocation is gone either way. */
  async cancel(jobId: string): Promise<void> {
    try {
      await this.run('scancel', [jobId]);
    } catch (e) {
      if (!(e instanceof SlurmCommandError && isJobGone(e.stderr))) throw e;
    }
  }

  /** For allocations that may exist although salloc never told us their job id (it timed out). */
  async cancelByName(jobName: string): Promise<void> {
    await this.run('scancel', [`--name=${jobName}`]);
  }

  private async run(command: string, args: string[]): Promise<CommandResult> {
    // Slurm's commands retry a missing config file for a minute before they give up.
    if (this.opts.slurmConf && !existsSync(this.opts.slurmConf)) throw new BackendError(`cannot run ${command}: SLURM_CONF ${this.opts.slurmConf} does not exist`);
    const file = this.opts.binDir ? join(this.opts.binDir, command) : command;
    let r: CommandResult;
    try {
      r = await this.runner(file, args, this.env, this.opts.timeoutMs);
    } catch (e) {
      throw new BackendError(`cannot run ${command}: ${(e as Error).message}`, { cause: e });
    }
    if (r.exitCode !== 0) throw new SlurmCommandError([command, ...args], r);
    return r;
  }
}
