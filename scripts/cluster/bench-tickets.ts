/**
 * What a Slurm-backed ticket costs over the Slurm allocation under it. Each iteration does,
 * on an idle cluster: the bare commands (salloc --no-shell for 1-N nodes, then scancel) and
 * the same through SlurmClusterManager (requestTicket = salloc + scontrol show job, then
 * releaseTicket = scancel), waiting between runs until Slurm has let the nodes go.
 *
 *   scripts/cluster/bench-tickets [--iterations 20] [--nodes 4] [--json]
 *
 * Needs root: starts its own private Slurm through slurm-up.sh and stops it afterwards.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SlurmClusterManager } from '../../lib/cluster/index.js';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '20' }, nodes: { type: 'string', default: '4' }, json: { type: 'boolean', default: false } } });
const iterations = Number(values.iterations);
const nodes = Number(values.nodes);
const scripts = resolve(import.meta.dirname, '../../../scripts/cluster');

const dir = mkdtempSync(join(tmpdir(), 'sf-slurm-bench-'));
const up = spawnSync(join(scripts, 'slurm-up.sh'), [dir, String(nodes)], { encoding: 'utf8', timeout: 600_000 });
if (up.status !== 0) throw new Error(`slurm-up.sh failed: ${up.stderr}`);
const slurmConf = join(dir, 'slurm.conf');
const env = { ...process.env, SLURM_CONF: slurmConf };
const slurm = (...args: string[]) => spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', env, timeout: 30_000 });
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function idle(): Promise<void> {
  for (let i = 0; i < 300 && slurm('squeue', '--noheader').stdout.trim() !== ''; i++) await new Promise((r) => setTimeout(r, 50));
}

const rows: { salloc: number; scancel: number; request: number; release: number; granted: number }[] = [];
const manager = new SlurmClusterManager({ slurmConf });
try {
  for (let i = 0; i < iterations; i++) {
    let t0 = process.hrtime.bigint();
    const r = slurm('salloc', '--no-shell', '--immediate', `--nodes=1-${nodes}`, '--spread-job', '--cpus-per-task=1', '--mem=256', '--job-name=bench');
    const salloc = ms(t0);
    const jobId = /Granted job allocation (\d+)/.exec(r.stderr)?.[1];
    if (!jobId) throw new Error(`salloc: ${r.stderr}`);
    t0 = process.hrtime.bigint();
    slurm('scancel', jobId);
    const scancel = ms(t0);
    await idle();

    t0 = process.hrtime.bigint();
    const ticket = await manager.requestTicket({ family: 'bench', n: nodes, vcpusPerClone: 1, memoryMiBPerClone: 256 });
    const request = ms(t0);
    t0 = process.hrtime.bigint();
    await manager.releaseTicket(ticket.id, 'bench');
    const release = ms(t0);
    await idle();
    rows.push({ salloc, scancel, request, release, granted: ticket.granted.length });
  }
} finally {
  await manager.close().catch(() => {});
  spawnSync(join(scripts, 'slurm-down.sh'), [dir], { timeout: 60_000 });
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const m = Object.fromEntries((['salloc', 'scancel', 'request', 'release'] as const).map((k) => [k, median(rows.map((r) => r[k]))])) as Record<'salloc' | 'scancel' | 'request' | 'release', number>;
const summary = {
  iterations, nodes, grantedAlways: rows.every((r) => r.granted === nodes),
  medianMs: m, requestOverSalloc: m.request / m.salloc, releaseOverScancel: m.release / m.scancel,
};
if (values.json) console.log(JSON.stringify({ summary, rows }));
else {
  const f = (x: number) => x.toFixed(1).padStart(6);
  console.log(`${iterations} iterations, ${nodes} nodes, every ticket got all nodes: ${summary.grantedAlways}`);
  console.log(`median ms   salloc ${f(m.salloc)}   requestTicket ${f(m.request)}   ratio ${summary.requestOverSalloc.toFixed(2)}`);
  console.log(`median ms  scancel ${f(m.scancel)}   releaseTicket ${f(m.release)}   ratio ${summary.releaseOverScancel.toFixed(2)}`);
}
