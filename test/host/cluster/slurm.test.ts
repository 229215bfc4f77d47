/**
 * SlurmClusterManager against a real Slurm 22.05: munged, slurmctld and four slurmd (n1..n4,
 * 2 CPUs and 4096 MiB each) on this host, started privately by scripts/cluster/slurm-up.sh.
 * What Slurm holds is checked with squeue/scontrol directly, never through the manager.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  InvalidRequestError, NoCapacityError, SlotTooLargeError, SlurmClusterManager, SlurmCommandError,
  TicketExpiredError, TicketReleasedError, TooManyClonesError, WrongFamilyError, type Ticket,
} from '../../../lib/cluster/index.js';
import { eventually, startSlurm, type SlurmLab } from './slurm-lab.js';

const asRoot = process.getuid?.() === 0;
const HOST_OF_NODE = { n1: 'dom0-1', n2: 'dom0-2', n3: 'dom0-3', n4: 'dom0-4' };
const NODE_OF_HOST = Object.fromEntries(Object.entries(HOST_OF_NODE).map(([n, h]) => [h, n]));

let lab: SlurmLab;
let manager: SlurmClusterManager;
const logged: string[] = [];

describe.skipIf(!asRoot)('SlurmClusterManager on a real Slurm', () => {
  beforeAll(() => {
    lab = startSlurm(4);
    manager = new SlurmClusterManager({ slurmConf: lab.slurmConf, hostOfNode: HOST_OF_NODE, maxClonesPerTicket: 16, log: (m) => logged.push(m) });
  });

  afterAll(async () => {
    try {
      await manager?.close();
    } finally {
      lab?.stop();
    }
    expect(logged).toEqual([]);
  });

  // A failed test must not leave its allocations to fail the next ones.
  afterEach(async () => {
    if (lab.slurm('squeue', '--noheader').stdout.trim() === '') return;
    lab.slurm('scancel', '--user=root');
    await eventually(() => lab.slurm('squeue', '--noheader').stdout.trim() === '');
  });

  /** The allocation is over: squeue no longer lists it and scontrol says it was cancelled. */
  async function expectCancelled(jobId: string): Promise<void> {
    expect(await eventually(() => lab.liveJob(jobId) === null)).toBe(true);
    expect(lab.finalState(jobId)).toBe('CANCELLED');
  }

  const nodesOf = (t: Ticket) => t.granted.map((s) => NODE_OF_HOST[s.host]);

  it('a ticket is a running Slurm allocation with one node per granted clone', async () => {
    const t = await manager.requestTicket({ family: 'vm-a', n: 3, vcpusPerClone: 1, memoryMiBPerClone: 512 });
    expect(t.granted).toHaveLength(3);
    expect(t.allocation).toMatch(/^\d+$/);
    const job = lab.liveJob(t.allocation!)!;
    expect(job.state).toBe('RUNNING');
    expect(job.name).toBe(`snowflock-${t.id}`);
    expect(job.comment).toBe('snowflock family vm-a');
    expect(job.nodes).toEqual(nodesOf(t)); // hosts are the nodes, through hostOfNode
    expect(new Set(job.nodes).size).toBe(3);
    for (const s of t.granted) expect(s).toMatchObject({ vcpus: 1, memoryMiB: 512 });
    const shown = lab.slurm('scontrol', '--details', 'show', 'job', t.allocation!).stdout;
    expect(shown).toMatch(/NumNodes=3 NumCPUs=3 /);
    expect(shown).toMatch(/Nodes=n\S+ CPU_IDs=\d+ Mem=512 /);
    await manager.releaseTicket(t.id, 'vm-a');
    await expectCancelled(t.allocation!);
    expect((await manager.describe()).tickets).toEqual([]);
  });

  it('grants up to n: with two nodes taken by another job, a request for 4 gets the other 2', async () => {
    const occupier = lab.occupy('--nodes=2', '--exclusive');
    try {
      const taken = lab.liveJob(occupier)!.nodes;
      const t = await manager.requestTicket({ family: 'vm-a', n: 4, vcpusPerClone: 1, memoryMiBPerClone: 256 });
      expect(t.requested).toBe(4);
      expect(t.granted).toHaveLength(2);
      expect(nodesOf(t).sort()).toEqual(['n1', 'n2', 'n3', 'n4'].filter((n) => !taken.includes(n)));
      expect(lab.liveJob(t.allocation!)!.nodes).toHaveLength(2);
      await manager.releaseTicket(t.id, 'vm-a');
      await expectCancelled(t.allocation!);
    } finally {
      lab.slurm('scancel', occupier);
    }
    await expectCancelled(occupier);
  });

  it('counts CPUs: after 1-vCPU clones on every node, a 2-vCPU clone fits nowhere but a 1-vCPU one still does', async () => {
    const first = await manager.requestTicket({ family: 'vm-a', n: 4, vcpusPerClone: 1, memoryMiBPerClone: 256 });
    expect(first.granted).toHaveLength(4);
    const err = await manager.requestTicket({ family: 'vm-b', n: 4, vcpusPerClone: 2, memoryMiBPerClone: 256 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoCapacityError);
    expect(String(err)).toMatch(/`salloc --no-shell .*--nodes=1-4.*` failed \(exit 1\): salloc: error: .*Requested nodes are busy/);
    const second = await manager.requestTicket({ family: 'vm-b', n: 4, vcpusPerClone: 1, memoryMiBPerClone: 256 });
    expect(second.granted).toHaveLength(4);
    const third = await manager.requestTicket({ family: 'vm-c', n: 1, vcpusPerClone: 1, memoryMiBPerClone: 256 }).catch((e: unknown) => e);
    expect(third).toBeInstanceOf(NoCapacityError);
    await manager.releaseTicket(first.id, 'vm-a');
    await manager.releaseTicket(second.id, 'vm-b');
    await expectCancelled(first.allocation!);
    await expectCancelled(second.allocation!);
  });

  it('sf_join and sf_kill cancel the allocation, and the ticket stays ended', async () => {
    const joined = await manager.requestTicket({ family: 'vm-a', n: 2, vcpusPerClone: 1, memoryMiBPerClone: 256, hierarchical: true });
    const killed = await manager.requestTicket({ family: 'vm-b', n: 2, vcpusPerClone: 1, memoryMiBPerClone: 256 });
    expect((await manager.useTicket(joined.id, 'vm-a')).state).toBe('in-use');
    expect((await manager.useTicket(killed.id, 'vm-b')).expiresAt).toBeNull();
    await manager.releaseTicket(joined.id, 'vm-a', 'join');
    await manager.releaseTicket(killed.id, 'vm-b', 'kill');
    await expectCancelled(joined.allocation!);
    await expectCancelled(killed.allocation!);
    await expect(manager.releaseTicket(joined.id, 'vm-a', 'kill')).rejects.toThrow(TicketReleasedError);
    await expect(manager.useTicket(killed.id, 'vm-b')).rejects.toThrow(/already released \(kill\)/);
  });

  it('another family can neither use nor release a ticket; the allocation survives the attempt', async () => {
    const t = await manager.requestTicket({ family: 'vm-a', n: 1, vcpusPerClone: 1, memoryMiBPerClone: 256 });
    await expect(manager.releaseTicket(t.id, 'vm-b')).rejects.toThrow(WrongFamilyError);
    await expect(manager.useTicket(t.id, 'vm-b')).rejects.toThrow(WrongFamilyError);
    expect(lab.liveJob(t.allocation!)?.state).toBe('RUNNING');
    await manager.releaseTicket(t.id, 'vm-a');
    await expectCancelled(t.allocation!);
  });

  it('an unused ticket expires and its allocation is cancelled', async () => {
    const shortLived = new SlurmClusterManager({ slurmConf: lab.slurmConf, ticketTtlMs: 1_000, log: (m) => logged.push(m) });
    try {
      const t = await shortLived.requestTicket({ family: 'vm-a', n: 2, vcpusPerClone: 1, memoryMiBPerClone: 256 });
      expect(lab.liveJob(t.allocation!)?.state).toBe('RUNNING');
      await expectCancelled(t.allocation!);
      await expect(shortLived.useTicket(t.id, 'vm-a')).rejects.toThrow(TicketExpiredError);
      expect((await shortLived.describe()).tickets).toEqual([]);
    } finally {
      await shortLived.close();
    }
  });

  it('close cancels every live allocation', async () => {
    const other = new SlurmClusterManager({ slurmConf: lab.slurmConf });
    const a = await other.requestTicket({ family: 'vm-a', n: 1, vcpusPerClone: 1, memoryMiBPerClone: 256 });
    const b = await other.requestTicket({ family: 'vm-b', n: 2, vcpusPerClone: 1, memoryMiBPerClone: 256 });
    await other.useTicket(b.id, 'vm-b');
    await other.close();
    await expectCancelled(a.allocation!);
    await expectCancelled(b.allocation!);
  });

  describe('bad requests', () => {
    /** Bad requests must not leave a job behind. */
    const jobCount = () => lab.slurm('squeue', '--noheader').stdout.trim().split('\n').filter(Boolean).length;

    it('n <= 0 and n above the limit are refused before Slurm is asked', async () => {
      const before = jobCount();
      await expect(manager.requestTicket({ family: 'vm-a', n: 0, vcpusPerClone: 1, memoryMiBPerClone: 256 })).rejects.toThrow(InvalidRequestError);
      await expect(manager.requestTicket({ family: 'vm-a', n: 17, vcpusPerClone: 1, memoryMiBPerClone: 256 })).rejects.toThrow(TooManyClonesError);
      expect(jobCount()).toBe(before);
    });

    it('a clone larger than any node is named as such, with salloc\'s reason', async () => {
      const before = jobCount();
      const cpus = await manager.requestTicket({ family: 'vm-a', n: 2, vcpusPerClone: 3, memoryMiBPerClone: 256 }).catch((e: unknown) => e);
      expect(cpus).toBeInstanceOf(SlotTooLargeError);
      expect(String(cpus)).toMatch(/no Slurm node can hold a clone of 3 vCPUs .*`salloc .*--cpus-per-task=3.*`.*Requested node configuration is not available/s);
      await expect(manager.requestTicket({ family: 'vm-a', n: 1, vcpusPerClone: 1, memoryMiBPerClone: 8192 })).rejects.toThrow(/Memory specification can not be satisfied/);
      expect(jobCount()).toBe(before);
    });

    it('unknown tickets are named', async () => {
      await expect(manager.useTicket('t-0000000000000000', 'vm-a')).rejects.toThrow('no such ticket: t-0000000000000000');
    });

    it('a controller that does not answer is a SlurmCommandError naming salloc and its stderr', async () => {
      const deadConf = `${lab.dir}/dead-controller.conf`;
      // Port 9 (discard) has no listener; MessageTimeout=1 makes the commands give up at once, not after 10 s.
      writeFileSync(deadConf, readFileSync(lab.slurmConf, 'utf8').replace(/^SlurmctldPort=.*$/m, 'SlurmctldPort=9') + 'MessageTimeout=1\n');
      const dead = new SlurmClusterManager({ slurmConf: deadConf, log: (m) => logged.push(m) });
      const err = await dead.requestTicket({ family: 'vm-a', n: 1, vcpusPerClone: 1, memoryMiBPerClone: 256 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SlurmCommandError);
      expect((err as SlurmCommandError).command[0]).toBe('salloc');
      expect((err as SlurmCommandError).stderr).toMatch(/Unable to contact slurm controller/);
      await dead.close();
    });
  });
});
