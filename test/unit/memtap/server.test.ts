import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemClient, MemClientError } from '../../../lib/memtap/client.js';
import { ErrorCode, MAX_GET, MsgType, decodeError, encodeGet, encodeHello } from '../../../lib/memtap/protocol.js';
import { RawPeer, handshake, sealed } from './handshake.js';
import type { MemServer } from '../../../lib/memtap/server.js';
import { PAGE } from './helpers.js';
import { serverFixture, startServer } from './server-fixture.js';

const fx = serverFixture();
afterAll(() => rmSync(fx.dir, { recursive: true, force: true }));

async function refusal(p: Promise<unknown>): Promise<MemClientError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(MemClientError);
  return e as MemClientError;
}

describe('MemServer serving', () => {
  let server: MemServer;
  let port: number;
  const connect = () => MemClient.connect('127.0.0.1', port, 5000);
  beforeAll(async () => {
    server = startServer(fx);
    port = (await server.listen()).port;
  });
  afterAll(() => server.close());

  it('welcomes a clone with the image, the pages to page out and the pages to load first', async () => {
    const c = await connect();
    const w = await c.hello(fx.token, 1);
    expect(w.pages).toBe(fx.gfns.length);
    expect(w.imageId.toString('hex')).toBe(fx.descriptor.meta.memory.imageId);
    expect(w.eager).toEqual(fx.eager);
    expect(w.evict).toEqual(fx.evict);
    expect(server.plan).toMatchObject({ pages: fx.gfns.length, zeroPages: fx.zero.length, eagerPages: fx.eager.length, evictPages: fx.gfns.length - fx.zero.length - fx.eager.length - 3 });
    c.close();
  });

  it('serves every populated page byte for byte, in the order asked', async () => {
    const c = await connect();
    await c.hello(fx.token, 1);
    const order = [...fx.gfns].reverse();
    order.splice(10, 0, order[3]!); // a repeat is served twice
    for (let i = 0; i < order.length; i += MAX_GET) {
      const gfns = order.slice(i, i + MAX_GET);
      const data = await c.get(gfns);
      expect(data.length).toBe(gfns.length * PAGE);
      gfns.forEach((g, j) => expect(data.subarray(j * PAGE, (j + 1) * PAGE).equals(fx.page(g)), `gfn 0x${g.toString(16)}`).toBe(true));
    }
    expect(server.stats().connections.find((x) => x.vmid === 1 && x.pages === order.length)).toBeDefined();
    c.close();
  });

  it('answers pipelined requests in order, and PING with the same payload', async () => {
    const c = await connect();
    await c.hello(fx.token, 2);
    const payload = Buffer.alloc(4096, 0x3c);
    const [a, pong, b] = await Promise.all([c.get([0x100]), c.ping(77, payload), c.get([0xfefff, 0])]);
    expect(a.equals(fx.page(0x100))).toBe(true);
    expect(pong.equals(payload)).toBe(true);
    expect(b.equals(Buffer.concat([fx.page(0xfefff), fx.page(0)]))).toBe(true);
    c.close();
  });

  it('refuses an unknown gfn with ERROR 3 naming it, then hangs up', async () => {
    const c = await connect();
    await c.hello(fx.token, 1);
    const before = server.stats().errors;
    const e = await refusal(c.get([0x100, 0xabcde]));
    expect(e.code).toBe(ErrorCode.UnknownGfn);
    expect(e.message).toMatch(/0xabcde/);
    expect(e.message).toContain(`127.0.0.1:${port}`);
    await refusal(c.ping(1)); // the connection is gone
    expect(server.stats().errors).toBe(before + 1);
  });

  it('refuses a bad token (2), bad magic (1), too many gfns (5) and GET before HELLO (4)', async () => {
    const c1 = await connect();
    expect((await refusal(c1.hello(Buffer.alloc(32, 1), 1))).message).toMatch(/did not prove this fork's key/);
    const p = await RawPeer.connect(port);
    await handshake(p, Buffer.alloc(32, 1), 1);
    const bad = await p.next();
    expect(bad?.[0]).toBe(MsgType.Error);
    expect(decodeError(bad!.subarray(1)).code).toBe(ErrorCode.BadToken);
    const c2 = await connect();
    c2.sendRaw(encodeHello({ nonce: Buffer.alloc(32), vmid: 1 }, Buffer.from('SFMTAP02')));
    expect((await refusal(c2.expect(MsgType.Welcome))).code).toBe(ErrorCode.BadMagic);
    const c3 = await connect();
    await c3.hello(fx.token, 1);
    expect((await refusal(c3.get(Array.from({ length: MAX_GET + 1 }, (_, i) => i)))).code).toBe(ErrorCode.TooManyGfns);
    const c4 = await connect();
    c4.sendRaw(encodeGet([1]));
    const e = await refusal(c4.expect(MsgType.Pages));
    expect(e.code).toBe(ErrorCode.Malformed);
    expect(e.message).toMatch(/before HELLO/);
  });

  it('sends ERROR after the answers to the frames before it, even when they arrive in one chunk', async () => {
    const p = await RawPeer.connect(port);
    const s = await handshake(p, fx.token, 1);
    expect(s.rx!.open((await p.next())!)?.type).toBe(MsgType.Welcome);
    p.socket.write(Buffer.concat([sealed(s, encodeGet([5])), Buffer.from([0, 0, 0, 0])]));
    const pages = s.rx!.open((await p.next())!)!;
    expect(pages.type).toBe(MsgType.Pages);
    expect(pages.payload.subarray(4 + 8).equals(fx.page(5))).toBe(true);
    const error = s.rx!.open((await p.next())!)!;
    expect(error.type).toBe(MsgType.Error);
    expect(decodeError(error.payload).code).toBe(ErrorCode.Malformed);
  });

  it('serves 4 clients at once, each getting its own pages right', async () => {
    const clients = await Promise.all([1, 2, 3, 4].map(async (vmid) => {
      const c = await connect();
      await c.hello(fx.token, vmid);
      return c;
    }));
    await Promise.all(clients.map(async (c, k) => {
      const order = fx.gfns.filter((_, i) => i % 4 === k).concat(fx.gfns.filter((_, i) => i % 4 !== k));
      for (let i = 0; i < order.length; i += 32) {
        const gfns = order.slice(i, i + 32);
        const data = await c.get(gfns);
        for (let j = 0; j < gfns.length; j++) {
          if (!data.subarray(j * PAGE, (j + 1) * PAGE).equals(fx.page(gfns[j]!))) throw new Error(`client ${k}: wrong page for gfn ${gfns[j]}`);
        }
      }
    }));
    for (const c of clients) c.close();
  });
});

describe('MemServer lifetime', () => {
  it('finishes once every clone said BYE (a repeated vmid counts once), and its port closes', async () => {
    const server = startServer(fx, { clones: 2 });
    const { port } = await server.listen();
    let finished = false;
    const done = new Promise<void>((r) => server.once('finished', () => r()));
    server.once('finished', () => (finished = true));
    for (const vmid of [1, 1]) {
      const c = await MemClient.connect('127.0.0.1', port);
      await c.hello(fx.token, vmid);
      await c.bye();
    }
    expect(finished).toBe(false);
    expect(server.stats().finishedVmids).toEqual([1]);
    const still = await MemClient.connect('127.0.0.1', port);
    await still.hello(fx.token, 3);
    const c2 = await MemClient.connect('127.0.0.1', port);
    await c2.hello(fx.token, 2);
    await c2.bye();
    await done;
    expect(server.stats()).toMatchObject({ byes: 3, finishedVmids: [1, 2] });
    await refusal(still.ping(1)); // other connections are closed with it
    const e = await refusal(MemClient.connect('127.0.0.1', port, 2000));
    expect(e.message).toMatch(/cannot connect/);
    await server.close(); // idempotent
  });

  it('refuses a BYE for another vmid', async () => {
    const server = startServer(fx);
    const { port } = await server.listen();
    const c = await MemClient.connect('127.0.0.1', port);
    await c.hello(fx.token, 1);
    const bye = Buffer.alloc(9);
    bye.writeUInt32LE(5, 0);
    bye[4] = MsgType.Bye;
    bye.writeUInt32LE(2, 5);
    c.sendFrame(bye);
    expect((await refusal(c.expect(MsgType.Pong))).code).toBe(ErrorCode.Malformed);
    expect(server.stats().finishedVmids).toEqual([]);
    await server.close();
  });

  it('will not start on an image of another descriptor or a missing one', async () => {
    await expect(startServer(fx, { imagePath: fx.descriptorPath }).listen()).rejects.toThrow(/not a snowflock memory image/);
    await expect(startServer(fx, { imagePath: `${fx.dir}/nope` }).listen()).rejects.toThrow(/cannot open memory image/);
    expect(() => startServer(fx, { token: Buffer.alloc(16) })).toThrow(/32 bytes/);
  });
});

it('decodes an ERROR frame the way the C++ client does', () => {
  const p = Buffer.concat([Buffer.from([3, 0, 0, 0]), Buffer.from('unknown gfn 0x10')]);
  expect(decodeError(p)).toEqual({ code: 3, message: 'unknown gfn 0x10' });
});
