// The Slurm manager's decisions, with a scripted stand-in for salloc/scontrol/scancel.
// The real thing is driven in test/host/cluster/slurm.test.ts.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BackendError, ManagerClosedError, NoCapacityError, SlotTooLargeError, SlurmClusterManager, SlurmCommandError,
} from '../../../lib/cluster/index.js';
import type { CommandResult, CommandRunner } from '../../../lib/cluster/run.js';

// Only its existence is checked before a command runs; the stand-in reads nothing from it.
const CONF_DIR = mkdtempSync(join(tmpdir(), 'sf-slurm-unit-'));
const SLURM_CONF = join(CONF_DIR, 'slurm.conf');
writeFileSync(SLURM_CONF, 'ClusterName=unit\n');
afterAll(() => rmSync(CONF_DIR, { recursive: true, force: true }));

type Reply = Partial<CommandResult> | ((args: readonly string[]) => Partial<CommandResult>);

/** Answers each command from a queue of replies and records every call. */
function fakeSlurm(replies: Record<string, Reply[]>) {
  const calls: string[][] = [];
  const runner: CommandRunner = async (file, args, env) => {
    const cmd = file.split('/').pop()!;
    calls.push([cmd, ...args]);
    expect(env.SLURM_CONF).toBe(SLURM_CONF);
    const next = replies[cmd]?.shift();
    if (!next) throw new Error(`unexpected ${cmd} ${args.join(' ')}`);
    const r = typeof next === 'function' ? next(args) : next;
    return { exitCode: 0, stdout: '', stderr: '', timedOut: false, ...r };
  };
  return { calls, runner };
}

const granted = (id: number): Reply => ({ stderr: `salloc: Granted job allocation ${id}\n` });
const job = (id: number, nodes: string, detail = `Nodes=${nodes} CPU_IDs=0-1 Mem=1024 GRES=`): Reply =>
  ({ stdout: `JobId=${id} JobName=x JobState=RUNNING ReqNodeList=(null) NodeList=${nodes} NumNodes=2 ${detail} Comment=x\n` });
const request = { family: 'vm-a', n: 4, vcpusPerClone: 2, memoryMiBPerClone: 1024 };
const manager = (runner: CommandRunner, extra = {}) =>
  new SlurmClusterManager({ slurmConf: SLURM_CONF, runner, log: () => {}, ...extra });

describe('SlurmClusterManager', () => {
  it('asks salloc for 1..n nodes of the clone size, without waiting, and maps the nodes to hosts', async () => {
    const slurm = fakeSlurm({ salloc: [granted(42)], scontrol: [job(42, 'n[2-3]')], scancel: [{}] });
    const m = manager(slurm.runner, { hostOfNode: { n2: 'dom0-b', n3: 'dom0-c' }, partition: 'clones' });
    const t = await m.requestTicket(request);
    expect(t.allocation).toBe('42');
    expect(t.granted).toEqual([{ host: 'dom0-b', vcpus: 2, memoryMiB: 1024 }, { host: 'dom0-c', vcpus: 2, memoryMiB: 1024 }]);
    const salloc = slurm.calls[0]!;
    expect(salloc).toEqual(expect.arrayContaining(['--no-shell', '--immediate', '--nodes=1-4', '--spread-job', '--cpus-per-task=2',
      '--mem=1024', `--job-name=snowflock-${t.id}`, '--comment=snowflock family vm-a', '--partition=clones']));
    expect(slurm.calls[1]).toEqual(['scontrol', '--details', '--oneliner', 'show', 'job', '42']);
    await m.releaseTicket(t.id, 'vm-a', 'join');
    expect(slurm.calls[2]).toEqual(['scancel', '42']);
  });

  it('"busy" from salloc is no capacity, naming the command and Slurm\'s words', async () => {
    const slurm = fakeSlurm({ salloc: [{ exitCode: 1, stderr: 'salloc: error: Unable to allocate resources: Requested nodes are busy\n' }] });
    const err = await manager(slurm.runner).requestTicket(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoCapacityError);
    expect(String(err)).toMatch(/`salloc --no-shell .*` failed \(exit 1\): salloc: error: .*Requested nodes are busy/);
    expect((err as Error).cause).toBeInstanceOf(SlurmCommandError);
  });

  it('"node configuration not available" is a slot too large', async () => {
    const slurm = fakeSlurm({ salloc: [{ exitCode: 1, stderr: 'salloc: error: Job submit/allocate failed: Requested node configuration is not available\n' }] });
    await expect(manager(slurm.runner).requestTicket(request)).rejects.toThrow(SlotTooLargeError);
  });

  it('other salloc failures come through as SlurmCommandError with stderr', async () => {
    const slurm = fakeSlurm({ salloc: [{ exitCode: 1, stderr: 'salloc: error: Invalid partition name specified\n' }] });
    const err = await manager(slurm.runner).requestTicket(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SlurmCommandError);
    expect((err as SlurmCommandError).stderr).toBe('salloc: error: Invalid partition name specified');
    expect((err as SlurmCommandError).command[0]).toBe('salloc');
  });

  it('when salloc times out, whatever it may have been granted is cancelled by job name', async () => {
    const slurm = fakeSlurm({ salloc: [{ exitCode: null, timedOut: true }], scancel: [{}] });
    await expect(manager(slurm.runner).requestTicket(request)).rejects.toThrow(/`salloc .*` timed out/);
    expect(slurm.calls[1]![0]).toBe('scancel');
    expect(slurm.calls[1]![1]).toMatch(/^--name=snowflock-t-[0-9a-f]{16}$/);
  });

  it('an allocation that cannot be turned into a ticket is cancelled, not leaked', async () => {
    const slurm = fakeSlurm({ salloc: [granted(7)], scontrol: [job(7, 'n[1-2]')], scancel: [{}] });
    const err = await manager(slurm.runner, { hostOfNode: { n1: 'a' } }).requestTicket(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(String(err)).toMatch(/node n2 has no snowflock host/);
    expect(slurm.calls.at(-1)).toEqual(['scancel', '7']);
  });

  it('an allocation granted while the manager was closing is cancelled, not issued', async () => {
    let m!: SlurmClusterManager;
    const slurm = fakeSlurm({ salloc: [() => (void m.close(), granted(11) as Partial<CommandResult>)], scontrol: [job(11, 'n1')], scancel: [{}] });
    m = manager(slurm.runner);
    await expect(m.requestTicket(request)).rejects.toThrow(ManagerClosedError);
    expect(slurm.calls.at(-1)).toEqual(['scancel', '11']);
    await expect(m.requestTicket(request)).rejects.toThrow('the cluster manager is closed');
  });

  it('a failed scancel keeps the ticket, so the release can be retried', async () => {
    const slurm = fakeSlurm({
      salloc: [granted(8)], scontrol: [job(8, 'n1')],
      scancel: [{ exitCode: 1, stderr: 'scancel: error: Unable to contact slurm controller (connect failure)' }, {}],
    });
    const m = manager(slurm.runner);
    const t = await m.requestTicket(request);
    await expect(m.releaseTicket(t.id, 'vm-a')).rejects.toThrow(/`scancel 8` failed \(exit 1\): .*connect failure/);
    expect((await m.describe()).tickets.map((x) => x.id)).toEqual([t.id]);
    await m.releaseTicket(t.id, 'vm-a');
    expect((await m.describe()).tickets).toEqual([]);
  });

  it('a job Slurm already ended counts as released', async () => {
    const slurm = fakeSlurm({ salloc: [granted(9)], scontrol: [job(9, 'n1')], scancel: [{ exitCode: 1, stderr: 'scancel: error: Kill job error on job id 9: Invalid job id specified' }] });
    const m = manager(slurm.runner);
    const t = await m.requestTicket(request);
    await m.releaseTicket(t.id, 'vm-a', 'kill');
    await expect(m.useTicket(t.id, 'vm-a')).rejects.toThrow(/already released \(kill\)/);
  });

  it('a missing SLURM_CONF is named at once (salloc would retry it for a minute)', async () => {
    const slurm = fakeSlurm({});
    const m = new SlurmClusterManager({ slurmConf: join(tmpdir(), 'no-such-dir', 'slurm.conf'), runner: slurm.runner });
    await expect(m.requestTicket(request)).rejects.toThrow(/cannot run salloc: SLURM_CONF .*no-such-dir.* does not exist/);
    expect(slurm.calls).toEqual([]);
  });

  it('keeps SLURM_CONF from the environment but not the variables of a job it runs in', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { SLURM_CONF, SLURM_JOB_ID: '5', SALLOC_PARTITION: 'x' });
    try {
      let seen: NodeJS.ProcessEnv = {};
      const m = new SlurmClusterManager({ runner: async (_f, _a, env) => ((seen = env), { exitCode: 1, stdout: '', stderr: 'x', timedOut: false }) });
      await m.requestTicket(request).catch(() => {});
      expect(seen.SLURM_CONF).toBe(SLURM_CONF);
      expect(seen.SLURM_JOB_ID).toBeUndefined();
      expect(seen.SALLOC_PARTITION).toBeUndefined();
    } finally {
      process.env = saved;
    }
  });

  it('refuses bad requests before running anything', async () => {
    const slurm = fakeSlurm({});
    await expect(manager(slurm.runner).requestTicket({ ...request, n: 0 })).rejects.toThrow(/n must be a positive integer/);
    expect(slurm.calls).toEqual([]);
  });
});
