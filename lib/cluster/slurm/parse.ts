/**
 * Reading what Slurm's commands print. scontrol's one-line Key=Value format is used rather than
 * `squeue --json` because its keys have been stable across Slurm releases, while the JSON
 * schema changes with each openapi plugin version (job_state became a list in 23.02, ...).
 */

/** The parts of `scontrol --details --oneliner show job` a ticket needs. */
export interface SlurmJob {
  jobId: string;
  /** RUNNING, PENDING, CANCELLED, COMPLETING, ... */
  state: string;
  /** Node names, expanded from Slurm's hostlist, in Slurm's order. */
  nodes: string[];
  /** What the job holds on each node (from --details), keyed by node name. */
  perNode: Map<string, { cpus: number; memoryMiB: number }>;
}

/** "salloc: Granted job allocation 1234" → "1234". */
export function parseGrantedJobId(sallocStderr: string): string | null {
  return /Granted job allocation (\d+)/.exec(sallocStderr)?.[1] ?? null;
}

/**
 * Why salloc refused, when the reason matters to the caller:
 * busy — the request is fine, the nodes are taken right now (--immediate could not start it);
 * impossible — no node of the partition could ever hold one slot of this size.
 */
export function allocationRefusal(sallocStderr: string): 'busy' | 'impossible' | null {
  if (/Requested nodes are busy|Immediate execution impossible|Resources temporarily unavailable/i.test(sallocStderr)) return 'busy';
  if (/Requested node configuration is not available|can not be satisfied|Node count specification invalid/i.test(sallocStderr)) return 'impossible';
  return null;
}

/** scancel's ways of saying there is nothing left to cancel. */
export function isJobGone(scancelStderr: string): boolean {
  return /Invalid job id specified|already completing or completed|Job has already finished/i.test(scancelStderr);
}

export function parseJob(oneliner: string): SlurmJob {
  const line = oneliner.trim().split('\n')[0] ?? '';
  const jobId = field(line, 'JobId');
  const state = field(line, 'JobState');
  const nodeList = field(line, 'NodeList');
  if (!jobId || !state || nodeList === undefined) throw new Error(`not a scontrol show job line: ${line.slice(0, 200)}`);
  const perNode = new Map<string, { cpus: number; memoryMiB: number }>();
  // --details adds one group per set of alike nodes: "Nodes=n[3-4] CPU_IDs=0-1 Mem=512 GRES="
  for (const m of line.matchAll(/(?:^|\s)Nodes=(\S+) CPU_IDs=(\S+) Mem=(\d+)/g)) {
    for (const node of expandHostlist(m[1]!)) perNode.set(node, { cpus: countIds(m[2]!), memoryMiB: Number(m[3]) });
  }
  return { jobId, state, nodes: nodeList === '(null)' || nodeList === '' ? [] : expandHostlist(nodeList), perNode };
}

/** The value of `Key=` where Key starts a token, so NodeList does not match ReqNodeList. */
function field(line: string, key: string): string | undefined {
  return new RegExp(`(?:^|\\s)${key}=(\\S*)`).exec(line)?.[1];
}

/** "0-1,4" → 3. */
export function countIds(list: string): number {
  let count = 0;
  for (const part of list.split(',')) {
    const [lo, hi] = part.split('-').map(Number);
    if (lo === undefined || Number.isNaN(lo)) continue;
    count += hi === undefined || Number.isNaN(hi) ? 1 : hi - lo + 1;
  }
  return count;
}

/**
 * Slurm's compressed host lists: "n1", "n[1-3,7]", "rack[01-02]-ib", "a1,b[2-3]",
 * "r[1-2]n[1-2]" (brackets expand left to right). Zero padding of a range is kept.
 */
export function expandHostlist(expr: string): string[] {
  const names: string[] = [];
  for (const item of splitTopLevel(expr)) names.push(...expandOne(item));
  return names;
}

function splitTopLevel(expr: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (c === '[') depth++;
    else if (c === ']') depth--;
    else if (c === ',' && depth === 0) {
      items.push(expr.slice(start, i));
      start = i + 1;
    }
  }
  items.push(expr.slice(start));
  return items.filter((s) => s !== '');
}

function expandOne(item: string): string[] {
  const open = item.indexOf('[');
  if (open < 0) return [item];
  const close = item.indexOf(']', open);
  if (close < 0) throw new Error(`unbalanced brackets in host list: ${item}`);
  const prefix = item.slice(0, open);
  const rest = expandOne(item.slice(close + 1));
  const out: string[] = [];
  for (const range of item.slice(open + 1, close).split(',')) {
    const [lo, hi = lo] = range.split('-');
    if (!lo || !/^\d+$/.test(lo) || !/^\d+$/.test(hi!)) throw new Error(`bad range "${range}" in host list: ${item}`);
    const width = lo.length;
    for (let i = Number(lo); i <= Number(hi); i++) {
      const num = String(i).padStart(width, '0');
      for (const suffix of rest) out.push(prefix + num + suffix);
    }
  }
  return out;
}
