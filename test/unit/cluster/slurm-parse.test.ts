// Reading salloc, scontrol and scancel output (samples from Slurm 22.05 as Debian 12 ships it).
import { describe, expect, it } from 'vitest';
import {
  allocationRefusal, countIds, expandHostlist, isJobGone, parseGrantedJobId, parseJob,
} from '../../../lib/cluster/slurm/parse.js';

// `scontrol --details --oneliner show job 9`, trimmed of fields nobody reads.
const RUNNING_JOB = 'JobId=9 JobName=snowflock-t-1 UserId=root(0) JobState=RUNNING Reason=None Partition=main '
  + 'AllocNode:Sid=localhost:2069 ReqNodeList=(null) ExcNodeList=(null) NodeList=n[3-4] BatchHost=n3 NumNodes=2 NumCPUs=2 '
  + 'NumTasks=2 CPUs/Task=1 TRES=cpu=2,mem=1G,node=2,billing=2 JOB_GRES=(null)   Nodes=n[3-4] CPU_IDs=0 Mem=512 GRES= '
  + 'MinCPUsNode=1 MinMemoryNode=512M Comment=snowflock family vm-a  Power= SpreadJob=Yes';

describe('salloc output', () => {
  it('finds the granted job id', () => {
    expect(parseGrantedJobId('salloc: Granted job allocation 1234\n')).toBe('1234');
    expect(parseGrantedJobId('salloc: Pending job allocation 7\n')).toBeNull();
  });

  it('tells "busy now" from "never fits"', () => {
    expect(allocationRefusal('salloc: error: Unable to allocate resources: Requested nodes are busy')).toBe('busy');
    expect(allocationRefusal('salloc: error: Unable to allocate resources: Immediate execution impossible, insufficient priority')).toBe('busy');
    expect(allocationRefusal('salloc: error: CPU count per node can not be satisfied\nsalloc: error: Job submit/allocate failed: Requested node configuration is not available')).toBe('impossible');
    expect(allocationRefusal('salloc: error: Memory specification can not be satisfied')).toBe('impossible');
    expect(allocationRefusal('salloc: error: Invalid partition name specified')).toBeNull();
  });
});

describe('scontrol show job', () => {
  it('reads id, state, nodes and what each node holds', () => {
    const job = parseJob(RUNNING_JOB);
    expect(job.jobId).toBe('9');
    expect(job.state).toBe('RUNNING');
    expect(job.nodes).toEqual(['n3', 'n4']);
    expect(job.perNode.get('n3')).toEqual({ cpus: 1, memoryMiB: 512 });
    expect(job.perNode.get('n4')).toEqual({ cpus: 1, memoryMiB: 512 });
  });

  it('keeps per-node groups apart when nodes hold different amounts', () => {
    const job = parseJob('JobId=3 JobState=RUNNING NodeList=n[1-3] Nodes=n1 CPU_IDs=0-1 Mem=1024 GRES= Nodes=n[2-3] CPU_IDs=0,3 Mem=512 GRES= ');
    expect([...job.perNode]).toEqual([['n1', { cpus: 2, memoryMiB: 1024 }], ['n2', { cpus: 2, memoryMiB: 512 }], ['n3', { cpus: 2, memoryMiB: 512 }]]);
  });

  it('does not take ReqNodeList for NodeList', () => {
    expect(parseJob('JobId=5 JobState=CANCELLED ReqNodeList=n1 NodeList=(null)').nodes).toEqual([]);
  });

  it('refuses output that is not a job', () => {
    expect(() => parseJob('No jobs in the system')).toThrow(/not a scontrol show job line/);
  });
});

describe('host lists', () => {
  it.each([
    ['n1', ['n1']],
    ['n[1-3,7]', ['n1', 'n2', 'n3', 'n7']],
    ['rack[08-10]-ib', ['rack08-ib', 'rack09-ib', 'rack10-ib']],
    ['a1,b[2-3],c', ['a1', 'b2', 'b3', 'c']],
    ['r[1-2]n[1-2]', ['r1n1', 'r1n2', 'r2n1', 'r2n2']],
  ])('%s', (expr, names) => expect(expandHostlist(expr)).toEqual(names));

  it('rejects malformed lists', () => {
    expect(() => expandHostlist('n[1-')).toThrow(/unbalanced/);
    expect(() => expandHostlist('n[a-b]')).toThrow(/bad range/);
  });

  it('counts CPU id lists', () => {
    expect(countIds('0')).toBe(1);
    expect(countIds('0-1,4')).toBe(3);
  });
});

describe('scancel output', () => {
  it('knows when there is nothing left to cancel', () => {
    expect(isJobGone('scancel: error: Kill job error on job id 99: Invalid job id specified')).toBe(true);
    expect(isJobGone('scancel: error: Kill job error on job id 9: Job/step already completing or completed')).toBe(true);
    expect(isJobGone('scancel: error: Unable to contact slurm controller (connect failure)')).toBe(false);
  });
});
