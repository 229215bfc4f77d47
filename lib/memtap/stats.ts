// A running memtap's counters: SIGUSR1 to its supervisor makes the worker log a stats line.
import { readFileSync } from 'node:fs';
import type { MemtapStats } from '../xen/native.js';

function statsLines(log: string): string[] {
  return readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"event":"stats"'));
}

export async function requestMemtapStats(pid: number, log: string, timeoutMs = 10_000): Promise<MemtapStats> {
  const before = statsLines(log).length;
  process.kill(pid, 'SIGUSR1');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = statsLines(log);
    if (lines.length > before) return (JSON.parse(lines.at(-1)!) as { stats: MemtapStats }).stats;
    if (Date.now() > deadline) throw new Error(`memtap ${pid} logged no stats in ${timeoutMs} ms (${log})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
