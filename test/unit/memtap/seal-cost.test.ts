// What sealing costs per fetch over loopback: the C++ page client (memtap's, via
// build/Release/page_client_test) and the TS client against the TS memserver, sealed vs
// --insecure-plaintext, 1-page and 64-page requests. A diagnostic, not a gate: it runs only with
//   SNOWFLOCK_BENCH=1 npx vitest run --project unit test/unit/memtap/seal-cost.test.ts
// and prints µs per request and the sealed/plain ratio (docs/security.md quotes a run), and for
// the C++ client the CPU time per request of each side (client: its getrusage; memserver: this
// process's), which a loaded host disturbs less than the wall clock.
//   SNOWFLOCK_BENCH_GETS (4000) requests per measurement, SNOWFLOCK_BENCH_ROUNDS (5) measurements
//   per row, plaintext and sealed alternating; SNOWFLOCK_BENCH_CLIENTS=C++ for the C++ rows only;
//   SNOWFLOCK_BENCH_CPU=N runs the C++ client and this process (the memserver) on CPU N alone, so
//   a request's work is serial and other load on the host moves the ratio less.
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { MemClient } from '../../../lib/memtap/client.js';
import { serverFixture, startServer } from './server-fixture.js';

const run = promisify(execFile);
const executable = join(fileURLToPath(new URL('../../..', import.meta.url)), 'build', 'Release', 'page_client_test');
const fx = serverFixture();
afterAll(() => rmSync(fx.dir, { recursive: true, force: true }));
const GETS = Number(process.env.SNOWFLOCK_BENCH_GETS ?? 4000);
const ROUNDS = Number(process.env.SNOWFLOCK_BENCH_ROUNDS ?? 5);
const CLIENTS = (process.env.SNOWFLOCK_BENCH_CLIENTS ?? 'C++,TS').split(',');
const CPU = process.env.SNOWFLOCK_BENCH_CPU;

/** µs per request: wall clock, and (C++ client) CPU time of the client and of this process, which runs the memserver */
interface Sample { wall: number; clientCpu?: number; serverCpu?: number }

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function native(port: number, gfns: number[]): Promise<Sample> {
  const cpu0 = cpuUs();
  const args = ['127.0.0.1', String(port), fx.token.toString('hex'), '1', ...gfns.map(String)];
  const { stdout } = await run(CPU === undefined ? executable : 'taskset', CPU === undefined ? args : ['-c', CPU, executable, ...args], {
    env: { ...process.env, PAGE_CLIENT_BENCH: String(GETS) }, timeout: 120_000,
  });
  const serverCpu = (cpuUs() - cpu0) / GETS;
  return { wall: Number(/ us_per_get=([\d.]+)/.exec(stdout)![1]), clientCpu: Number(/cpu_us_per_get=([\d.]+)/.exec(stdout)![1]), serverCpu };
}

async function ts(port: number, gfns: number[]): Promise<Sample> {
  const c = await MemClient.connect('127.0.0.1', port);
  await c.hello(fx.token, 1);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < GETS; i++) await c.get(gfns);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / GETS;
  c.close();
  return { wall: us };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

it.skipIf(process.env.SNOWFLOCK_BENCH !== '1')('sealed vs plaintext page fetches over loopback', async () => {
  if (CPU !== undefined) await run('taskset', ['-a', '-p', '-c', CPU, String(process.pid)]);
  const servers = { sealed: startServer(fx, { clones: 1e9 }), plain: startServer(fx, { clones: 1e9, insecurePlaintext: true }) };
  const ports = { sealed: (await servers.sealed.listen()).port, plain: (await servers.plain.listen()).port };
  const pages = fx.gfns.filter((g) => !fx.zero.includes(g));
  const rows: string[] = [];
  for (const [client, fetch] of [['C++', native], ['TS', ts]] as const) {
    if (!CLIENTS.includes(client) || (client === 'C++' && !existsSync(executable))) continue;
    for (const batch of [1, 64]) {
      const gfns = pages.slice(0, batch);
      const t = { sealed: [] as Sample[], plain: [] as Sample[] };
      for (let r = 0; r < ROUNDS; r++) {
        for (const mode of ['plain', 'sealed'] as const) t[mode].push(await fetch(ports[mode], gfns));
      }
      const m = (mode: 'sealed' | 'plain', k: keyof Sample) => median(t[mode].map((x) => x[k]!));
      const [s, p] = [m('sealed', 'wall'), m('plain', 'wall')];
      let row = `${client} client, ${String(batch).padStart(2)} page(s)/request: plain ${p.toFixed(1)} µs, sealed ${s.toFixed(1)} µs, ratio ${(s / p).toFixed(2)}x`;
      if (t.sealed[0]!.clientCpu !== undefined) {
        const cpu = (k: 'clientCpu' | 'serverCpu') => `${m('plain', k).toFixed(1)} → ${m('sealed', k).toFixed(1)} µs`;
        row += `; CPU per request, client ${cpu('clientCpu')}, memserver ${cpu('serverCpu')}`;
      }
      rows.push(row);
    }
  }
  console.log(`memserver sealing cost (${GETS} requests, median of ${ROUNDS}${CPU === undefined ? '' : `, on CPU ${CPU}`}):\n  ${rows.join('\n  ')}`);
  await servers.sealed.close();
  await servers.plain.close();
  expect(rows.length).toBeGreaterThan(0);
}, 600_000);
