/**
 * Host-test support: a private Slurm cluster (scripts/cluster/slurm-up.sh) and the plain Slurm
 * commands the tests use to check, independently of lib/cluster, what Slurm really holds.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expandHostlist } from '../../../lib/cluster/slurm/parse.js';

const SCRIPTS = resolve(import.meta.dirname, '../../../scripts/cluster');

export interface SlurmLab {
  dir: string;
  slurmConf: string;
  /** Runs a Slurm command against this cluster; never throws. */
  slurm(command: string, ...args: string[]): { code: number | null; stdout: string; stderr: string };
  /** squeue's view of a job: null when it holds nothing any more (ended or purged). */
  liveJob(jobId: string): { state: string; nodes: string[]; name: string; comment: string } | null;
  /** scontrol's JobState, which stays readable for MinJobAge after the job ended. */
  finalState(jobId: string): string | undefined;
  /** Allocates nodes outside lib/cluster (another user's job); returns its job id. */
  occupy(...sallocArgs: string[]): string;
  stop(): void;
}

export function startSlurm(nodes: number): SlurmLab {
  const dir = mkdtempSync(join(tmpdir(), 'sf-slurm-'));
  // Bounded for a first run that installs the packages; a warm start takes well under a second.
  const up = spawnSync(join(SCRIPTS, 'slurm-up.sh'), [dir, String(nodes)], { encoding: 'utf8', timeout: 110_000, killSignal: 'SIGKILL' });
  if (up.status !== 0) {
    // slurm-up.sh cleans up after its own failures, but not after being killed for taking too long.
    spawnSync(join(SCRIPTS, 'slurm-down.sh'), [dir], { timeout: 60_000 });
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`slurm-up.sh failed (${up.status ?? up.signal}):\n${up.stderr}`);
  }
  const slurmConf = join(dir, 'slurm.conf');
  const env = { ...process.env, SLURM_CONF: slurmConf };
  const slurm = (command: string, ...args: string[]) => {
    const r = spawnSync(command, args, { encoding: 'utf8', env, timeout: 30_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  return {
    dir,
    slurmConf,
    slurm,
    liveJob(jobId) {
      const r = slurm('squeue', '--noheader', `--jobs=${jobId}`, '--format=%T|%N|%j|%k');
      const line = r.stdout.trim();
      if (r.code !== 0 || line === '') return null;
      const [state = '', nodeList = '', name = '', comment = ''] = line.split('|');
      return { state, nodes: nodeList ? expandHostlist(nodeList) : [], name, comment };
    },
    finalState(jobId) {
      return /JobState=(\S+)/.exec(slurm('scontrol', 'show', 'job', jobId).stdout)?.[1];
    },
    occupy(...sallocArgs) {
      const r = slurm('salloc', '--no-shell', '--immediate', '--job-name=occupier', ...sallocArgs);
      const id = /Granted job allocation (\d+)/.exec(r.stderr)?.[1];
      if (!id) throw new Error(`occupier salloc failed: ${r.stderr}`);
      return id;
    },
    stop() {
      slurm('scancel', '--user=root'); // the cluster is private: every job in it is ours
      const down = spawnSync(join(SCRIPTS, 'slurm-down.sh'), [dir], { encoding: 'utf8', timeout: 60_000 });
      if (down.status !== 0) throw new Error(`slurm-down.sh failed: ${down.stderr}`);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls until check() is true; false if it never was within the bound. */
export async function eventually(check: () => boolean, boundMs = 15_000): Promise<boolean> {
  for (const end = Date.now() + boundMs; Date.now() < end;) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}
