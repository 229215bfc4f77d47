// The page stream against a network peer (issue 20, item 4): a proxy between client and server
// records and tampers with the bytes. A recorded session replayed on another connection gets no
// page, a wrong key gets nothing, a flipped bit ends the connection, the wire shows no page, and
// a server that does not hold the fork's key is not believed.
import { rmSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemClient, MemClientError } from '../../../lib/memtap/client.js';
import { ErrorCode, MsgType, decodeError, encodeGet } from '../../../lib/memtap/protocol.js';
import type { MemServer } from '../../../lib/memtap/server.js';
import { RawPeer, flip, handshake, sealed } from './handshake.js';
import { PAGE } from './helpers.js';
import { serverFixture, startServer } from './server-fixture.js';

const fx = serverFixture();
afterAll(() => rmSync(fx.dir, { recursive: true, force: true }));

/** A TCP relay that records what passes each way and may rewrite it. */
class Proxy {
  readonly up: Buffer[] = [];
  readonly down: Buffer[] = [];
  port = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(target: number, private readonly tamper: { down?: (b: Buffer, at: number) => Buffer } = {}) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(target, '127.0.0.1');
      let downAt = 0;
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => (client.destroy(), upstream.destroy()));
      }
      client.on('data', (d: Buffer) => (this.up.push(Buffer.from(d)), upstream.write(d)));
      upstream.on('data', (d: Buffer) => {
        const out = this.tamper.down ? this.tamper.down(Buffer.from(d), downAt) : d;
        downAt += d.length;
        this.down.push(Buffer.from(out));
        client.write(out);
      });
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }

  wire(): Buffer {
    return Buffer.concat([...this.up, ...this.down]);
  }
}

/** Whether any 64-byte run from the middle of a served page shows in `wire`. */
const showsPages = (wire: Buffer, gfns: number[]) => gfns.some((g) => wire.includes(fx.page(g).subarray(1024, 1088)));

async function failure(p: Promise<unknown>): Promise<MemClientError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(MemClientError);
  return e as MemClientError;
}

const GFNS = [0x100, 0x101, 0x102, 0x1004, 5];

describe('sealed page stream', () => {
  let server: MemServer;
  let port: number;
  beforeAll(async () => {
    server = startServer(fx, { clones: 1000 });
    port = (await server.listen()).port;
  });
  afterAll(() => server.close());

  it('a sniffer sees no page bytes, nor the key', async () => {
    const proxy = new Proxy(port);
    const c = await MemClient.connect('127.0.0.1', await proxy.listen());
    await c.hello(fx.token, 1);
    expect(c.plaintext).toBe(false);
    const data = await c.get(GFNS);
    GFNS.forEach((g, i) => expect(data.subarray(i * PAGE, (i + 1) * PAGE).equals(fx.page(g))).toBe(true));
    c.close();
    proxy.close();
    expect(showsPages(proxy.wire(), GFNS)).toBe(false);
    expect(proxy.wire().includes(fx.token)).toBe(false);
  });

  it('a recorded session replayed on another connection gets no page', async () => {
    const proxy = new Proxy(port);
    const c = await MemClient.connect('127.0.0.1', await proxy.listen());
    await c.hello(fx.token, 2);
    await c.get(GFNS);
    await c.ping(7);
    c.close();
    proxy.close();
    const before = server.stats().pages;
    // The replay: the recorded HELLO, then (after the server's CHALLENGE) everything else.
    const recorded = Buffer.concat(proxy.up);
    const p = await RawPeer.connect(port);
    p.socket.write(recorded.subarray(0, 53));
    expect((await p.next())?.[0]).toBe(MsgType.Challenge);
    p.socket.write(recorded.subarray(53));
    const answer = await p.next();
    expect(answer?.[0]).toBe(MsgType.Error);
    expect(decodeError(answer!.subarray(1)).code).toBe(ErrorCode.BadToken);
    await p.closed;
    expect(p.rest()).toEqual([]);
    expect(showsPages(Buffer.concat(p.records), GFNS)).toBe(false);
    expect(server.stats().pages).toBe(before);
  });

  it('a wrong key gets nothing but ERROR 2', async () => {
    const before = server.stats().pages;
    const p = await RawPeer.connect(port);
    const s = await handshake(p, Buffer.alloc(32, 7), 1);
    expect(s.challenge).toBeUndefined(); // a CHALLENGE came
    p.socket.write(sealed(s, encodeGet([0x100])));
    const answer = await p.next();
    expect(answer?.[0]).toBe(MsgType.Error);
    expect(decodeError(answer!.subarray(1)).code).toBe(ErrorCode.BadToken);
    await p.closed;
    expect(p.rest()).toEqual([]);
    expect(server.stats().pages).toBe(before);
  });

  it('a bit flipped in a sealed frame to the server ends the connection unanswered', async () => {
    const before = server.stats().pages;
    const p = await RawPeer.connect(port);
    const s = await handshake(p, fx.token, 1);
    expect(s.rx!.open((await p.next())!)?.type).toBe(MsgType.Welcome);
    const get = sealed(s, encodeGet([0x100]));
    flip(get, 9, 0x10);
    p.socket.write(get);
    const answer = s.rx!.open((await p.next())!);
    expect(answer?.type).toBe(MsgType.Error);
    expect(decodeError(answer!.payload).message).toMatch(/failed authentication/);
    await p.closed;
    expect(server.stats().pages).toBe(before);
  });

  it('a bit flipped in a sealed PAGES ends the client\'s connection; nothing is delivered', async () => {
    let welcomeSeen = false;
    const proxy = new Proxy(port, {
      down: (b, at) => {
        // CHALLENGE is 77 bytes, then WELCOME; flip a bit well into the first PAGES
        if (welcomeSeen && at + b.length > 2000 && b.length > 1000) flip(b, b.length - 500, 1);
        if (at + b.length > 77) welcomeSeen = true;
        return b;
      },
    });
    const c = await MemClient.connect('127.0.0.1', await proxy.listen());
    await c.hello(fx.token, 1);
    const e = await failure(c.get(GFNS));
    expect(e.message).toMatch(/failed authentication|closed/);
    proxy.close();
  });

  it('a server without the fork\'s key is not believed', async () => {
    const other = startServer(fx, { token: Buffer.alloc(32, 9) });
    const { port: otherPort } = await other.listen();
    const c = await MemClient.connect('127.0.0.1', otherPort);
    const e = await failure(c.hello(fx.token, 1));
    expect(e.message).toMatch(/did not prove this fork's key/);
    await other.close();
  });
});

describe('--insecure-plaintext (trusted networks)', () => {
  it('still proves the key both ways, but pages cross in clear', async () => {
    const server = startServer(fx, { insecurePlaintext: true });
    const { port } = await server.listen();
    const proxy = new Proxy(port);
    const c = await MemClient.connect('127.0.0.1', await proxy.listen());
    await c.hello(fx.token, 1);
    expect(c.plaintext).toBe(true);
    const data = await c.get(GFNS);
    GFNS.forEach((g, i) => expect(data.subarray(i * PAGE, (i + 1) * PAGE).equals(fx.page(g))).toBe(true));
    c.close();
    proxy.close();
    expect(showsPages(proxy.wire(), GFNS)).toBe(true); // the sniffer check above can see pages
    expect(proxy.wire().includes(fx.token)).toBe(false);
    const wrong = await MemClient.connect('127.0.0.1', port);
    expect((await failure(wrong.hello(Buffer.alloc(32, 7), 1))).message).toMatch(/did not prove/);
    await server.close();
  });
});
