// 20,000 random and mutated frames at a live server: it must answer each connection with
// well-formed frames only (at most one ERROR, last), never crash, and serve a good client after.
// Most connections do the handshake first; their frames are sealed (then sometimes mangled), and
// every answer must open with the connection's key.
import { prng } from '../prng.js';
import { rmSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { MemClient } from '../../../lib/memtap/client.js';
import {
  MsgType, decodeError, encodeBye, encodeGet, encodeHello, encodePing, encodeProof, type Frame,
} from '../../../lib/memtap/protocol.js';
import { RawPeer, flip, handshake, sealed, type Session } from './handshake.js';
import { PAGE } from './helpers.js';
import { serverFixture, startServer } from './server-fixture.js';

const fx = serverFixture();
afterAll(() => rmSync(fx.dir, { recursive: true, force: true }));

const FRAMES = 20_000;
const PER_CONNECTION = 4; // a connection ends at its first ERROR: few frames each, so most are read

it('survives 20,000 random and mutated frames and still serves a valid client', async () => {
  const server = startServer(fx, { clones: 1e9 });
  const { port } = await server.listen();
  const rnd = prng(20261126);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const known = () => pick(fx.gfns);

  const valid = (): Buffer => {
    const r = rnd();
    if (r < 0.05) return encodeHello({ nonce: Buffer.alloc(32, int(256)), vmid: int(8) });
    if (r < 0.1) return encodeProof(Buffer.alloc(32, int(256)));
    if (r < 0.5) return encodeGet(Array.from({ length: 1 + int(rnd() < 0.9 ? 8 : 300) }, () => (rnd() < 0.95 ? known() : int(2 ** 32))));
    if (r < 0.7) return encodePing(int(2 ** 32), Buffer.alloc(int(4200), int(256)));
    if (r < 0.8) return encodeBye(int(8));
    const b = Buffer.alloc(5 + int(40), int(256)); // any type, any body, a consistent length
    b.writeUInt32LE(b.length - 4, 0);
    b[4] = int(256);
    return b;
  };
  const mutate = (f: Buffer): Buffer => {
    const b = Buffer.from(f);
    switch (int(6)) {
      case 0: for (let i = 0, n = 1 + int(4); i < n; i++) b[int(b.length)] = int(256); return b;
      case 1: return b.subarray(0, int(b.length)); // truncated: the rest of the stream is read as its body
      case 2: b.writeUInt32LE(pick([0, 1, 2, b.length, 0xffffffff, (1 << 20) + 65, int(2 ** 32)]), 0); return b;
      case 3: b[4] = int(256); return b;
      case 4: return Buffer.concat([b, Buffer.alloc(1 + int(16), int(256))]);
      default: return Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256)));
    }
  };

  /** one connection: maybe a good handshake, then fuzz; returns the server's answers, opened */
  const connection = async (hello: boolean, frames: Buffer[], chunks: number): Promise<Frame[]> => {
    const p = await RawPeer.connect(port);
    let s: Session = { flags: 0 };
    if (hello) s = await handshake(p, fx.token, int(8));
    const wire = frames.map((f) => {
      if (!s.tx) return f;
      const b = sealed(s, f);
      if (rnd() < 0.1) flip(b, int(b.length), 1 << int(8)); // a flipped bit: the server must close
      return b;
    });
    const bytes = Buffer.concat(wire);
    let at = 0;
    for (let i = 1; i <= chunks; i++) {
      const end = i === chunks ? bytes.length : Math.min(bytes.length, at + int(bytes.length));
      p.socket.write(bytes.subarray(at, end));
      at = end;
    }
    p.socket.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([p.closed, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('server neither answered nor hung up')), 10_000)))]);
    clearTimeout(timer);
    return p.rest().map((r) => {
      if (!s.rx) return { type: r[0]!, payload: r.subarray(1) };
      const f = s.rx.open(r);
      if (!f) throw new Error('the server sent a sealed frame that does not open');
      return f;
    });
  };

  let sent = 0;
  let errorsSeen = 0;
  let pagesSeen = 0;
  const worker = async () => {
    while (sent < FRAMES) {
      const hello = rnd() < 0.8;
      const frames: Buffer[] = [];
      for (let i = 0; i < PER_CONNECTION; i++) frames.push(rnd() < 0.5 ? valid() : mutate(valid()));
      sent += PER_CONNECTION;
      const answers = await connection(hello, frames, 1 + int(4));
      answers.forEach((f, i) => {
        expect([MsgType.Welcome, MsgType.Pages, MsgType.Pong, MsgType.Error, MsgType.Challenge]).toContain(f.type);
        if (f.type === MsgType.Welcome) expect(i).toBe(0);
        if (f.type === MsgType.Challenge) expect(hello).toBe(false);
        if (f.type === MsgType.Error) {
          expect(i).toBe(answers.length - 1);
          expect(decodeError(f.payload).code).toBeGreaterThanOrEqual(1);
          expect(decodeError(f.payload).code).toBeLessThanOrEqual(5);
          errorsSeen++;
        }
        if (f.type === MsgType.Pages) {
          const n = f.payload.readUInt32LE(0);
          const g = Number(f.payload.readBigUInt64LE(4));
          expect(f.payload.subarray(4 + n * 8, 4 + n * 8 + PAGE).equals(fx.page(g))).toBe(true);
          pagesSeen++;
        }
      });
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);

  expect(errorsSeen).toBeGreaterThan(FRAMES / PER_CONNECTION / 2);
  expect(pagesSeen).toBeGreaterThan(500);
  expect(server.stats().errors).toBe(errorsSeen);

  const c = await MemClient.connect('127.0.0.1', port);
  const w = await c.hello(fx.token, 1);
  expect(w.evict).toEqual(fx.evict);
  const gfns = fx.gfns.slice(0, 200);
  const data = await c.get(gfns);
  gfns.forEach((g, i) => expect(data.subarray(i * PAGE, (i + 1) * PAGE).equals(fx.page(g))).toBe(true));
  expect(await c.ping(5, Buffer.from('still here'))).toEqual(Buffer.from('still here'));
  c.close();
  await server.close();
}, 120_000);
