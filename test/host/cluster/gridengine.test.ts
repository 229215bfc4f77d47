/**
 * GridEngineClusterManager against a real Grid Engine 8.1.9: qmaster and one execd on this host
 * with 3 slots in all.q (scripts/cluster/gridengine-up.sh). What Grid Engine holds is checked
 * with qstat directly, never through the manager.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  GridEngineClusterManager, NoCapacityError, TicketReleasedError, WrongFamilyError,
} from '../../../lib/cluster/index.js';

const asRoot = process.getuid?.() === 0;
const SCRIPTS = resolve(import.meta.dirname, '../../../scripts/cluster');
const SLOTS = 3;
const env = { ...process.env, SGE_ROOT: '/var/lib/gridengine', SGE_CELL: 'default' };
const logged: string[] = [];
let manager: GridEngineClusterManager;

/**
 * qstat's view, independent of lib/cluster: job id, or "job.task" for a task of an array job (the
 * waiting tasks of one job share a line: "job.4,5") → [state, queue].
 */
function held(): Map<string, { state: string; queue: string }> {
  const out = execFileSync('qstat', ['-u', '*'], { env, encoding: 'utf8' });
  const jobs = new Map<string, { state: string; queue: string }>();
  for (const line of out.split('\n').slice(2)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !/^\d+$/.test(f[0]!)) continue;
    // job-ID prior name user state date time [queue (running)] slots [ja-task-ID]
    const running = f[4] === 'r';
    const task = f[running ? 9 : 8];
    jobs.set(task ? `${f[0]}.${task}` : f[0]!, { state: f[4]!, queue: running ? f[7]! : '' });
  }
  return jobs;
}

async function eventually(cond: () => boolean, ms = 15_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
  return true;
}

const req = (family: string, n: number) => ({ family, n, vcpusPerClone: 1, memoryMiBPerClone: 512 });

describe.skipIf(!asRoot)('GridEngineClusterManager on a real Grid Engine', () => {
  beforeAll(() => {
    const up = spawnSync(resolve(SCRIPTS, 'gridengine-up.sh'), [String(SLOTS)], { encoding: 'utf8', timeout: 700_000 });
    if (up.status !== 0) throw new Error(`gridengine-up.sh failed (${up.status ?? up.signal}):\n${up.stdout}\n${up.stderr}`);
    manager = new GridEngineClusterManager({ maxClonesPerTicket: 16, log: (m) => logged.push(m) });
  }, 720_000);

  afterAll(async () => {
    try {
      await manager?.close();
    } finally {
      spawnSync(resolve(SCRIPTS, 'gridengine-down.sh'), [], { timeout: 120_000 });
    }
    expect(logged).toEqual([]);
  }, 180_000);

  // A failed test must not leave its holder jobs to fail the next ones.
  afterEach(async () => {
    if (held().size === 0) return;
    spawnSync('qdel', ['-u', '*', '*'], { env });
    await eventually(() => held().size === 0);
  });

  it('a ticket is one array job, a running one-slot task per granted clone, on this host; join deletes them', async () => {
    const t = await manager.requestTicket(req('vm-a', 2));
    expect(t.granted).toEqual([{ host: hostname(), vcpus: 1, memoryMiB: 512 }, { host: hostname(), vcpus: 1, memoryMiB: 512 }]);
    const ids = t.allocation!.split(',');
    expect(ids).toHaveLength(2);
    expect(new Set(ids.map((id) => id.split('.')[0])).size).toBe(1); // tasks of one job
    const jobs = held();
    for (const id of ids) expect(jobs.get(id)).toEqual({ state: 'r', queue: `all.q@${hostname()}` });
    await manager.useTicket(t.id, 'vm-a');
    await manager.releaseTicket(t.id, 'vm-a', 'join');
    expect(await eventually(() => ids.every((id) => !held().has(id)))).toBe(true);
    await expect(manager.releaseTicket(t.id, 'vm-a')).rejects.toBeInstanceOf(TicketReleasedError);
  });

  it('"up to n" is honoured when slots are busy: the grant is what is free, the rest is not left queued', async () => {
    const first = await manager.requestTicket(req('vm-a', 2));
    const second = await manager.requestTicket(req('vm-b', 4)); // 1 of 3 slots is left
    expect(second.granted).toHaveLength(1);
    expect(second.requested).toBe(4);
    expect(held().size).toBe(SLOTS); // the 3 waiting holders of the second ticket were deleted
    expect([...held().values()].every((j) => j.state === 'r')).toBe(true);
    await expect(manager.requestTicket(req('vm-c', 1))).rejects.toBeInstanceOf(NoCapacityError);
    expect(held().size).toBe(SLOTS);
    await expect(manager.releaseTicket(first.id, 'vm-b')).rejects.toBeInstanceOf(WrongFamilyError);
    await manager.releaseTicket(first.id, 'vm-a', 'kill');
    await manager.releaseTicket(second.id, 'vm-b', 'join');
    expect(await eventually(() => held().size === 0)).toBe(true);
    // The slots are free again.
    const again = await manager.requestTicket(req('vm-c', 3));
    expect(again.granted).toHaveLength(3);
    await manager.releaseTicket(again.id, 'vm-c');
  });

  it('an unused ticket expires and its jobs are deleted', async () => {
    const short = new GridEngineClusterManager({ ticketTtlMs: 300, log: (m) => logged.push(m) });
    try {
      const t = await short.requestTicket(req('vm-d', 1));
      const [id] = t.allocation!.split(',');
      expect(held().has(id!)).toBe(true);
      expect(await eventually(() => !held().has(id!))).toBe(true);
    } finally {
      await short.close();
    }
  });
});
