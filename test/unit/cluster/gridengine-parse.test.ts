// What Grid Engine 8.1.9 prints, as the plug-in reads it (samples from a real qmaster).
import { describe, expect, it } from 'vitest';
import { heldId, hostOfQueue, isJobGone, parseQstatXml, parseSubmittedJobId } from '../../../lib/cluster/gridengine/parse.js';

const QSTAT_XML = `<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>1</JB_job_number>
      <JAT_prio>0.75000</JAT_prio>
      <JB_name>snowflock-t-0123456789abcdef</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-26T15:57:24</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>snowflock-t-0123456789abcdef</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-26T15:57:25</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>`;

// `qsub -t 1-5` with 3 slots free: a <job_list> per running task, the waiting ones in one.
const ARRAY_XML = `<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>40</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>sf-test</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-12-07T19:15:40</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
      <tasks>1</tasks>
    </job_list>
    <job_list state="running">
      <JB_job_number>40</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>sf-test</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-12-07T19:15:40</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
      <tasks>3</tasks>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>40</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>sf-test</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-12-07T19:15:40</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>4,5</tasks>
    </job_list>
  </job_info>
</job_info>`;

describe('Grid Engine output', () => {
  it('qstat -xml: running jobs with their queue instance, waiting ones without', () => {
    expect(parseQstatXml(QSTAT_XML)).toEqual([
      { jobId: '1', name: 'snowflock-t-0123456789abcdef', state: 'r', queue: 'all.q@vm', tasks: null },
      { jobId: '3', name: 'snowflock-t-0123456789abcdef', state: 'qw', queue: null, tasks: null },
    ]);
    expect(parseQstatXml("<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n</job_info>")).toEqual([]);
  });

  it('qstat -xml of an array job: each running task by its own id, the waiting ones together', () => {
    const jobs = parseQstatXml(ARRAY_XML);
    expect(jobs.map((j) => [j.state, j.tasks, heldId(j)])).toEqual([['r', '1', '40.1'], ['r', '3', '40.3'], ['qw', '4,5', '40']]);
    expect(heldId(parseQstatXml(QSTAT_XML)[0]!)).toBe('1');
  });

  it('qsub -terse, queue instances, qdel of a job that is gone', () => {
    expect(parseSubmittedJobId('42\n')).toBe('42');
    expect(parseSubmittedJobId('43.1-4:1\n')).toBe('43');
    expect(parseSubmittedJobId('Unable to run job: denied\n')).toBeNull();
    expect(hostOfQueue('all.q@node-7.example')).toBe('node-7.example');
    expect(isJobGone('denied: job "5" does not exist')).toBe(true);
    expect(isJobGone('job "40" task "9" does not exist')).toBe(true);
    expect(isJobGone('error: commlib error: got select error (Connection refused)')).toBe(false);
  });
});
