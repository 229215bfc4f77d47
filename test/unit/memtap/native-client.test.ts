// The C++ page client that memtap fetches with (native/page_client.cc) against the TS memserver:
// both ends of the handshake and the sealed frames must agree byte for byte. Runs
// build/Release/page_client_test (binding.gyp; built where the Xen headers and libssl-dev are).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { flip } from './handshake.js';
import { serverFixture, startServer } from './server-fixture.js';

const run = promisify(execFile);
const executable = join(fileURLToPath(new URL('../../..', import.meta.url)), 'build', 'Release', 'page_client_test');
const built = existsSync(executable);
const fx = serverFixture();
afterAll(() => rmSync(fx.dir, { recursive: true, force: true }));

async function client(port: number, token: Buffer, gfns: number[], vmid = 1): Promise<{ code: number; lines: string[] }> {
  const args = ['127.0.0.1', String(port), token.toString('hex'), String(vmid), ...gfns.map(String)];
  try {
    const { stdout } = await run(executable, args, { timeout: 20_000 });
    return { code: 0, lines: stdout.trim().split('\n') };
  } catch (e) {
    const x = e as { code?: number; stdout?: string };
    return { code: x.code ?? -1, lines: (x.stdout ?? '').trim().split('\n') };
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.skipIf(!built)(built ? 'native page client against the TS memserver' : 'native page client: skipped, no build/Release/page_client_test (needs Xen headers and libssl-dev)', () => {
  it('does the handshake, fetches sealed pages byte for byte in batches of 64, and says goodbye', async () => {
    const server = startServer(fx, { clones: 1 });
    const { port } = await server.listen();
    const finished = new Promise((r) => server.once('finished', r));
    const gfns = fx.gfns.filter((g) => !fx.zero.includes(g)).slice(0, 150);
    const r = await client(port, fx.token, gfns);
    expect(r.code).toBe(0);
    expect(r.lines[0]).toBe(`welcome pages=${fx.gfns.length} evict=${fx.evict.length} eager=${fx.eager.length} plaintext=0`);
    expect(r.lines.slice(1, -1)).toEqual(gfns.map((g) => `page ${g} ${sha(fx.page(g))}`));
    expect(r.lines.at(-1)).toBe('bye');
    await finished;
    expect(server.stats()).toMatchObject({ hellos: 1, pages: gfns.length, byes: 1, errors: 0 });
  });

  it('believes no server without the fork\'s key, and a server refuses its wrong key', async () => {
    const other = startServer(fx, { token: Buffer.alloc(32, 9) });
    const { port } = await other.listen();
    const r = await client(port, fx.token, [0x100]);
    expect(r.code).toBe(2);
    expect(r.lines[0]).toMatch(/^error errno=13 .*did not prove this fork's key/);
    expect(other.stats().pages).toBe(0);
    await other.close();
  });

  it('fails on a bit flipped in a sealed PAGES, and gets nothing from a version-1 server', async () => {
    const server = startServer(fx, { clones: 100 });
    const { port } = await server.listen();
    // a relay that flips one bit ~3 KiB into the server's stream (past CHALLENGE and WELCOME)
    let seen = 0;
    const relay = net.createServer((c) => {
      const up = net.connect(port, '127.0.0.1');
      c.on('data', (d) => up.write(d));
      up.on('data', (d: Buffer) => {
        const at = 3000 - seen;
        if (at >= 0 && at < d.length) flip(d, at, 4);
        seen += d.length;
        c.write(d);
      });
      for (const s of [c, up]) s.on('error', () => {}).on('close', () => (c.destroy(), up.destroy()));
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    const r = await client((relay.address() as net.AddressInfo).port, fx.token, [0x100, 0x101]);
    expect(r.code).toBe(2);
    expect(r.lines.join('\n')).toMatch(/error errno=71 .*failed authentication/);
    relay.close();
    await server.close();

    // a memserver of protocol version 1 answers a version-2 HELLO with ERROR 1 naming the version
    const old = net.createServer((s) => s.once('data', () => {
      const text = Buffer.from('protocol version 2 is not supported (server speaks 1)');
      const f = Buffer.alloc(9 + text.length);
      f.writeUInt32LE(5 + text.length, 0);
      f[4] = 5;
      f.writeUInt32LE(1, 5);
      text.copy(f, 9);
      s.end(f);
    }));
    await new Promise<void>((res) => old.listen(0, '127.0.0.1', () => res()));
    const v1 = await client((old.address() as net.AddressInfo).port, fx.token, []);
    expect(v1.lines[0]).toMatch(/refused \(code 1\): protocol version 2 is not supported \(server speaks 1\)/);
    old.close();
  });

  it('follows a server that chose plaintext frames (--insecure-plaintext)', async () => {
    const server = startServer(fx, { clones: 1, insecurePlaintext: true });
    const { port } = await server.listen();
    const r = await client(port, fx.token, [0x100]);
    expect(r.code).toBe(0);
    expect(r.lines[0]).toMatch(/plaintext=1$/);
    expect(r.lines[1]).toBe(`page ${0x100} ${sha(fx.page(0x100))}`);
    await server.close();
  });
});
