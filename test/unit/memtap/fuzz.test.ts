// 20,000 random and mutated frames at a live server: it must answer each connection with
// well-formed frames only (at most one ERROR, last), never crash, and serve a good client after.
import { prng } from '../prng.js';
import { rmSync } from 'node:fs';
import net from 'node:net';
import { afterAll, expect, it } from 'vitest';
import { MemClient } from '../../../lib/memtap/client.js';
import {
  FrameReader, MAX_REPLY_FRAME, MsgType, decodeError, encodeBye, encodeGet, encodeHello, encodePing,
} from '../../../lib/memtap/protocol.js';
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
    if (r < 0.1) return encodeHello({ token: rnd() < 0.7 ? fx.token : Buffer.alloc(32, int(256)), vmid: int(8) });
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

  /** one connection: maybe a good HELLO, then fuzz; returns everything the server sent */
  const connection = (bytes: Buffer, chunks: number) =>
    new Promise<Buffer>((resolve, reject) => {
      const got: Buffer[] = [];
      const s = net.connect(port, '127.0.0.1', () => {
        let at = 0;
        for (let i = 1; i <= chunks; i++) {
          const end = i === chunks ? bytes.length : Math.min(bytes.length, at + int(bytes.length));
          s.write(bytes.subarray(at, end));
          at = end;
        }
        s.end();
      });
      const timer = setTimeout(() => reject(new Error('server neither answered nor hung up')), 10_000);
      s.on('data', (d: Buffer) => got.push(d));
      s.on('error', () => {}); // a reset after ERROR is fine; the checks below look at what arrived
      s.on('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(got));
      });
    });

  let sent = 0;
  let errorsSeen = 0;
  let pagesSeen = 0;
  const worker = async () => {
    while (sent < FRAMES) {
      const hello = rnd() < 0.8;
      const frames = [hello ? encodeHello({ token: fx.token, vmid: int(8) }) : Buffer.alloc(0)];
      for (let i = 0; i < PER_CONNECTION; i++) frames.push(rnd() < 0.5 ? valid() : mutate(valid()));
      sent += PER_CONNECTION;
      const reply = await connection(Buffer.concat(frames), 1 + int(4));
      const reader = new FrameReader(MAX_REPLY_FRAME);
      const answers = reader.push(reply);
      expect(reader.error).toBeUndefined();
      expect(reader.buffered).toBe(0); // nothing half-sent
      answers.forEach((f, i) => {
        expect([MsgType.Welcome, MsgType.Pages, MsgType.Pong, MsgType.Error]).toContain(f.type);
        if (f.type === MsgType.Welcome) expect(i).toBe(0);
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
