/** Reading what Grid Engine's commands print: `qsub -terse`, `qstat -xml`, `qdel`. */

export interface SgeJob {
  jobId: string;
  name: string;
  /** qstat's state letters: r (running), qw (waiting), t (moving), Eqw, dr, ... */
  state: string;
  /** The queue instance a running job holds a slot of, e.g. "all.q@host7"; null while waiting. */
  queue: string | null;
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
    jobs.push({ jobId, name: tag('JB_name') ?? '', state: tag('state') ?? '', queue: queue ? queue : null });
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
