// What sealing costs per fetch over loopback: the C++ page client (memtap's, via
// build/Release/page_client_test) and the TS client against the TS memserver, sealed vs
// --insecure-plaintext, 1-page and 64-page requests. A diagnostic, not a gate: it runs only with
//   SNOWFLOCK_BENCH=1 npx vitest run --project unit test/unit/memtap/seal-cost.test.ts
// and prints µs per request and the sealed/plain ratio (docs/security.md quotes a run).
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
const ROUNDS = 5;

async function native(port: number, gfns: number[]): Promise<number> {
  const { stdout } = await run(executable, ['127.0.0.1', String(port), fx.token.toString('hex'), '1', ...gfns.map(String)], {
    env: { ...process.env, PAGE_CLIENT_BENCH: String(GETS) }, timeout: 120_000,
  });
  return Number(/us_per_get=([\d.]+)/.exec(stdout)![1]);
}

async function ts(port: number, gfns: number[]): Promise<number> {
  const c = await MemClient.connect('127.0.0.1', port);
  await c.hello(fx.token, 1);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < GETS; i++) await c.get(gfns);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / GETS;
  c.close();
  return us;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

it.skipIf(process.env.SNOWFLOCK_BENCH !== '1')('sealed vs plaintext page fetches over loopback', async () => {
  const servers = { sealed: startServer(fx, { clones: 1e9 }), plain: startServer(fx, { clones: 1e9, insecurePlaintext: true }) };
  const ports = { sealed: (await servers.sealed.listen()).port, plain: (await servers.plain.listen()).port };
  const pages = fx.gfns.filter((g) => !fx.zero.includes(g));
  const rows: string[] = [];
  for (const [client, fetch] of [['C++', native], ['TS', ts]] as const) {
    if (client === 'C++' && !existsSync(executable)) continue;
    for (const batch of [1, 64]) {
      const gfns = pages.slice(0, batch);
      const t = { sealed: [] as number[], plain: [] as number[] };
      for (let r = 0; r < ROUNDS; r++) {
        for (const mode of ['plain', 'sealed'] as const) t[mode].push(await fetch(ports[mode], gfns));
      }
      const s = median(t.sealed);
      const p = median(t.plain);
      rows.push(`${client} client, ${String(batch).padStart(2)} page(s)/request: plain ${p.toFixed(1)} µs, sealed ${s.toFixed(1)} µs, ratio ${(s / p).toFixed(2)}x`);
    }
  }
  console.log(`memserver sealing cost (${GETS} requests, median of ${ROUNDS}):\n  ${rows.join('\n  ')}`);
  await servers.sealed.close();
  await servers.plain.close();
  expect(rows.length).toBeGreaterThan(0);
}, 600_000);
