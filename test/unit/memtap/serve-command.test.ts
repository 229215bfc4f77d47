import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemClient } from '../../../lib/memtap/client.js';
import { runMemServer, type RunMemServerOptions } from '../../../lib/memtap/serve-command.js';
import { serverFixture } from './server-fixture.js';

const fx = serverFixture();
afterAll(() => rmSync(fx.dir, { recursive: true, force: true }));

function run(o: Partial<RunMemServerOptions>) {
  const out: string[] = [];
  const err: string[] = [];
  let listening: (line: Record<string, unknown>) => void = () => {};
  const first = new Promise<Record<string, unknown>>((r) => (listening = r));
  const code = runMemServer({
    descriptor: fx.descriptorPath, image: fx.imagePath, tokenFile: fx.tokenFile, clones: 1, host: '127.0.0.1', signals: false,
    stdout: (l) => {
      if (out.push(l) === 1) listening(JSON.parse(l) as Record<string, unknown>);
    },
    stderr: (l) => err.push(l),
    ...o,
  });
  return { out, err, first, code };
}

describe('runMemServer', () => {
  it('prints the listening line first, then exits 0 when the clones are finished', async () => {
    const r = run({ clones: 2, json: true });
    const ev = await r.first;
    expect(ev).toMatchObject({ event: 'listening', host: '127.0.0.1', pages: fx.gfns.length, zeroPages: fx.zero.length, eagerPages: fx.eager.length });
    expect(ev.evictPages).toBe(fx.evict.reduce((n, [, c]) => n + c, 0));
    for (const vmid of [1, 2]) {
      const c = await MemClient.connect('127.0.0.1', ev.port as number);
      await c.hello(fx.token, vmid);
      await c.bye();
    }
    expect(await r.code).toBe(0);
    const events = r.out.slice(1).map((l) => JSON.parse(l) as { event: string; why?: string });
    expect(events.map((e) => e.event)).toEqual(['hello', 'bye', 'hello', 'bye', 'finished', 'exit']);
    expect(events.at(-1)!.why).toBe('finished');
    expect(r.err).toEqual([]);
  });

  it('seals frames unless told the network is trusted (insecurePlaintext or SNOWFLOCK_MEMSERVER_INSECURE_PLAINTEXT=1)', async () => {
    for (const [o, env, sealed] of [[{}, undefined, true], [{ insecurePlaintext: true }, undefined, false], [{}, '1', false]] as const) {
      if (env) process.env.SNOWFLOCK_MEMSERVER_INSECURE_PLAINTEXT = env;
      try {
        const r = run({ ...o, json: true });
        const ev = await r.first;
        expect(ev.sealed).toBe(sealed);
        const c = await MemClient.connect('127.0.0.1', ev.port as number);
        await c.hello(fx.token, 1);
        expect(c.plaintext).toBe(!sealed);
        await c.bye();
        expect(await r.code).toBe(0);
      } finally {
        delete process.env.SNOWFLOCK_MEMSERVER_INSECURE_PLAINTEXT;
      }
    }
  });

  it('closes cleanly on SIGTERM', async () => {
    const saved = process.listeners('SIGTERM');
    process.removeAllListeners('SIGTERM'); // only ours may see the fake signal
    try {
      const r = run({ signals: true });
      const ev = await r.first;
      process.emit('SIGTERM', 'SIGTERM');
      expect(await r.code).toBe(0);
      expect(r.err.at(-1)).toMatch(/^memserver: exit why=SIGTERM/);
      await expect(MemClient.connect('127.0.0.1', ev.port as number, 2000)).rejects.toThrow(/cannot connect/);
      expect(process.listenerCount('SIGTERM')).toBe(0);
    } finally {
      for (const l of saved) process.on('SIGTERM', l);
    }
  });

  it('removes the family directory once finished, only if it holds the image', async () => {
    const other = serverFixture();
    const refused = run({ descriptor: other.descriptorPath, image: other.imagePath, removeOnExit: fx.dir });
    expect(await refused.code).toBe(1);
    expect(refused.err[0]).toMatch(/refusing to remove/);
    const r = run({ descriptor: other.descriptorPath, image: other.imagePath, removeOnExit: other.dir });
    const ev = await r.first;
    const c = await MemClient.connect('127.0.0.1', ev.port as number);
    await c.hello(other.token, 1);
    await c.bye();
    expect(await r.code).toBe(0);
    expect(existsSync(other.dir)).toBe(false);
  });

  it('exits 1 with one line on bad input', async () => {
    const badToken = join(fx.dir, 'bad-token');
    writeFileSync(badToken, 'not hex');
    const cases: [Partial<RunMemServerOptions>, RegExp][] = [
      [{ descriptor: join(fx.dir, 'missing.sfd') }, /cannot read descriptor .*missing\.sfd/],
      [{ descriptor: fx.imagePath }, /not a snowflock descriptor/],
      [{ image: fx.descriptorPath }, /not a snowflock memory image/],
      [{ tokenFile: badToken }, /64 hex characters/],
      [{ tokenFile: join(fx.dir, 'no-token') }, /cannot read token file/],
      [{ clones: 0 }, /--clones/],
    ];
    for (const [o, message] of cases) {
      const r = run(o);
      expect(await r.code).toBe(1);
      expect(r.out).toEqual([]);
      expect(r.err).toHaveLength(1);
      expect(r.err[0]).toMatch(message);
    }
    const j = run({ json: true, image: join(fx.dir, 'nope.mem') });
    expect(await j.code).toBe(1);
    expect(JSON.parse(j.out[0]!)).toMatchObject({ event: 'error', message: expect.stringMatching(/cannot open memory image/) });
  });
});
