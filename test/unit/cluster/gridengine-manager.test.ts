// The Grid Engine manager's commands, against a stand-in for qsub/qstat/qdel that keeps jobs,
// array tasks and slots as Grid Engine 8.1.9 does (output shapes from a real qmaster). The real
// thing is driven in test/host/cluster/gridengine.test.ts.
import { describe, expect, it } from 'vitest';
import { GridEngineClusterManager, NoCapacityError, SgeCommandError } from '../../../lib/cluster/index.js';
import type { CommandResult, CommandRunner } from '../../../lib/cluster/run.js';

interface Task { state: 'r' | 'qw'; name: string }

/** A qmaster with `slots` free slots on host `vm`; a task starts at submission if a slot is free. */
function fakeGridEngine(slots: number, o: { qsubFails?: string } = {}) {
  const calls: string[][] = [];
  const jobs = new Map<number, Map<number, Task>>();
  let nextJob = 40;
  let free = slots;
  const ok = (stdout = ''): CommandResult => ({ exitCode: 0, stdout, stderr: '', timedOut: false });
  const fail = (stderr: string): CommandResult => ({ exitCode: 1, stdout: '', stderr, timedOut: false });
  const entry = (job: number, t: Task, tasks: string) =>
    `    <job_list state="${t.state === 'r' ? 'running' : 'pending'}">\n      <JB_job_number>${job}</JB_job_number>\n      <JB_name>${t.name}</JB_name>\n` +
    `      <JB_owner>root</JB_owner>\n      <state>${t.state}</state>\n      <queue_name>${t.state === 'r' ? 'all.q@vm' : ''}</queue_name>\n      <slots>1</slots>\n` +
    `${tasks === '0' ? '' : `      <tasks>${tasks}</tasks>\n`}    </job_list>\n`;

  const commands: Record<string, (args: readonly string[]) => CommandResult> = {
    qsub: (args) => {
      if (o.qsubFails) return fail(o.qsubFails);
      // An array job of tasks 1..n, or (no -t) a plain job: task 0, which qstat shows without <tasks>.
      const t = args.indexOf('-t');
      const range = t >= 0 ? /^1-(\d+)$/.exec(args[t + 1]!) : null;
      if (t >= 0 && !range) return fail('the stand-in takes array jobs of tasks 1-N only');
      const [first, last] = range ? [1, Number(range[1])] : [0, 0];
      const name = args[args.indexOf('-N') + 1]!;
      const id = nextJob++;
      const tasks = new Map<number, Task>();
      for (let i = first; i <= last; i++) {
        const run = free > 0;
        if (run) free--;
        tasks.set(i, { state: run ? 'r' : 'qw', name });
      }
      jobs.set(id, tasks);
      return ok(range ? `${id}.1-${last}:1\n` : `${id}\n`);
    },
    qstat: () => {
      let running = '';
      let pending = '';
      for (const [job, tasks] of jobs) {
        for (const [i, t] of tasks) if (t.state === 'r') running += entry(job, t, String(i));
        const waiting = [...tasks].filter(([, t]) => t.state === 'qw');
        if (waiting.length) pending += entry(job, waiting[0]![1], waiting.map(([i]) => i).join(','));
      }
      return ok(`<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n${running}  </queue_info>\n  <job_info>\n${pending}  </job_info>\n</job_info>\n`);
    },
    qdel: (args) => {
      let said = '';
      let gone = false;
      for (const a of args) {
        const [job, task] = a.split('.').map(Number) as [number, number | undefined];
        const tasks = jobs.get(job);
        const picked = tasks ? (task === undefined ? [...tasks.keys()] : tasks.has(task) ? [task] : []) : [];
        if (picked.length === 0) {
          gone = true;
          said += tasks ? `job "${job}" task "${task}" does not exist\n` : `denied: job "${job}" does not exist\n`;
          continue;
        }
        for (const i of picked) {
          if (tasks!.get(i)!.state === 'r') free++;
          tasks!.delete(i);
          said += `root has deleted job-array task ${job}.${i}\n`;
        }
        if (tasks!.size === 0) jobs.delete(job);
      }
      return gone ? { ...fail(''), stdout: said } : ok(said);
    },
  };
  const runner: CommandRunner = async (file, args) => {
    const cmd = file.split('/').pop()!;
    calls.push([cmd, ...args]);
    const run = commands[cmd];
    if (!run) throw new Error(`unexpected ${cmd} ${args.join(' ')}`);
    return run(args);
  };
  const called = (cmd: string) => calls.filter((c) => c[0] === cmd);
  /** what Grid Engine holds: "job.task", or "job" for a plain job */
  const held = () => [...jobs].flatMap(([job, tasks]) => [...tasks.keys()].map((i) => (i === 0 ? `${job}` : `${job}.${i}`)));
  return { runner, calls, called, held };
}

const manager = (runner: CommandRunner, extra = {}) => new GridEngineClusterManager({ runner, startWaitMs: 50, log: () => {}, maxClonesPerTicket: 64, ...extra });
const request = (n: number) => ({ family: 'vm-a', n, vcpusPerClone: 1, memoryMiBPerClone: 512 });

describe('GridEngineClusterManager', () => {
  it('a ticket for n clones is one qsub, an array job of n one-slot tasks, whatever n', async () => {
    for (const n of [4, 1, 32]) {
      const sge = fakeGridEngine(64);
      const m = manager(sge.runner, { queue: 'clones.q' });
      const t = await m.requestTicket(request(n));
      expect(sge.called('qsub')).toHaveLength(1);
      expect(sge.called('qsub')[0]).toEqual(['qsub', '-terse', '-t', `1-${n}`, '-b', 'y', '-o', '/dev/null', '-e', '/dev/null',
        '-N', `snowflock-${t.id}`, '-ac', 'snowflock=vm-a', '-q', 'clones.q', 'sleep', 'infinity']);
      expect(t.granted).toHaveLength(n);
      expect(t.allocation).toBe(Array.from({ length: n }, (_, i) => `40.${i + 1}`).join(','));
      await m.releaseTicket(t.id, 'vm-a', 'join');
      expect(sge.called('qdel')).toEqual([['qdel', ...t.allocation!.split(',')]]);
      expect(sge.held()).toEqual([]);
      await m.close();
    }
  });

  it('"up to n": the tasks that started are the grant, each by its own id; the waiting ones are deleted in one qdel', async () => {
    const sge = fakeGridEngine(3);
    const m = manager(sge.runner);
    const t = await m.requestTicket(request(5));
    expect(t.granted).toEqual(Array.from({ length: 3 }, () => ({ host: 'vm', vcpus: 1, memoryMiB: 512 })));
    expect(t.allocation).toBe('40.1,40.2,40.3');
    expect(sge.called('qdel')).toEqual([['qdel', '40.4', '40.5']]);
    expect(sge.held()).toEqual(['40.1', '40.2', '40.3']);
    // No slot is left: the next ticket's one task never starts and is not left waiting.
    await expect(m.requestTicket({ ...request(1), family: 'vm-b' })).rejects.toBeInstanceOf(NoCapacityError);
    expect(sge.held()).toEqual(['40.1', '40.2', '40.3']);
    // One of the ticket's tasks already gone (qdel by hand): the others are still deleted.
    await sge.runner('qdel', ['40.2'], {}, 1000);
    await m.releaseTicket(t.id, 'vm-a');
    expect(sge.held()).toEqual([]);
    await m.close();
  });

  it('a failed qsub is the error, naming Grid Engine\'s words, and nothing is deleted', async () => {
    const sge = fakeGridEngine(3, { qsubFails: 'Unable to run job: denied: host "vm" is no submit host.' });
    const err = await manager(sge.runner).requestTicket(request(2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SgeCommandError);
    expect((err as Error).message).toMatch(/`qsub -terse -t 1-2 .*` failed \(exit 1\): Unable to run job: denied/);
    expect(sge.called('qdel')).toEqual([]);
  });
});
