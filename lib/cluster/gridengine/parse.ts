/** Reading what Grid Engine's commands print: `qsub -terse`, `qstat -xml`, `qdel`. */

export interface SgeJob {
  jobId: string;
  name: string;
  /** qstat's state letters: r (running), qw (waiting), t (moving), Eqw, dr, ... */
  state: string;
  /** The queue instance a running job holds a slot of, e.g. "all.q@host7"; null while waiting. */
  queue: string | null;
  /** An array job's task(s) this entry stands for: one id for a running task ("3"), a list or range for waiting ones ("4,5", "2-4:1"); null for a job that is no array. */
  tasks: string | null;
}

/** One task of an array job as Grid Engine names it (qdel takes it): "42.3". */
export const taskId = (jobId: string, task: number | string) => `${jobId}.${task}`;

/** What a running entry holds: "42.3" for a task of an array job, "42" for a plain job. */
export function heldId(job: SgeJob): string {
  return job.tasks !== null && /^\d+$/.test(job.tasks) ? taskId(job.jobId, job.tasks) : job.jobId;
}

/** `qsub -terse` prints the job id alone ("42", or "42.1-4:1" for an array job). */
export function parseSubmittedJobId(stdout: string): string | null {
  return /^(\d+)(?:\.|\s*$)/m.exec(stdout.trim())?.[1] ?? null;
}

/** Every <job_list> of `qstat -xml` (running ones under queue_info, waiting ones under job_info). */
export function parseQstatXml(xml: string): SgeJob[] {
  const jobs: SgeJob[] = [];
  for (const m of xml.matchAll(/<job_list\b[^>]*>([\s\S]*?)<\/job_list>/g)) {
    const body = m[1]!;
    const tag = (name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(body)?.[1];
    const jobId = tag('JB_job_number');
    if (!jobId) continue;
    const queue = tag('queue_name');
    const tasks = tag('tasks');
    jobs.push({ jobId, name: tag('JB_name') ?? '', state: tag('state') ?? '', queue: queue ? queue : null, tasks: tasks ? tasks : null });
  }
  return jobs;
}

/** The host of a queue instance: "all.q@host7" → "host7". */
export function hostOfQueue(queue: string): string {
  const at = queue.lastIndexOf('@');
  return at < 0 ? queue : queue.slice(at + 1);
}

/** qdel's ways of saying a job is not there (any more). */
export function isJobGone(qdelOutput: string): boolean {
  return /does not exist/i.test(qdelOutput);
}
