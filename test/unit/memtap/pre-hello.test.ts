// Before HELLO a peer has proved nothing, so the memserver keeps next to nothing for it: no more
// than a HELLO frame's bytes, and a bounded number of such connections per address.
import { rmSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MemClient } from '../../../lib/memtap/client.js';
import { ErrorCode, MAX_FRAME, decodeError } from '../../../lib/memtap/protocol.js';
import type { MemServer } from '../../../lib/memtap/server.js';
import { serverFixture, startServer } from './server-fixture.js';

const fx = serverFixture();
let server: MemServer;
let port: number;
beforeAll(async () => {
  server = startServer(fx);
  port = (await server.listen()).port;
});
afterAll(async () => {
  await server.close();
  rmSync(fx.dir, { recursive: true, force: true });
});

/** Sends `bytes` and collects what the server answers until it hangs up. */
function exchange(bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(got)));
  });
}

it('refuses a first frame larger than a HELLO as soon as it has seen more than a HELLO', async () => {
  const head = Buffer.alloc(4);
  head.writeUInt32LE(MAX_FRAME);
  const reply = await exchange(Buffer.concat([head, Buffer.alloc(4096)]));
  expect(reply[4]).toBe(5); // ERROR
  expect(decodeError(reply.subarray(5))).toMatchObject({ code: ErrorCode.Malformed, message: expect.stringMatching(/first frame must be a HELLO/) });
});

it('holds at most 32 connections without HELLO from one address; one that says HELLO is served', async () => {
  const idle = await Promise.all(Array.from({ length: 40 }, () => new Promise<net.Socket>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', () => {});
  })));
  await new Promise((r) => setTimeout(r, 200));
  expect(server.stats().connections.length).toBe(32);
  for (const s of idle) s.destroy();
  await new Promise((r) => setTimeout(r, 200));
  const c = await MemClient.connect('127.0.0.1', port, 5000);
  await c.hello(fx.token, 1);
  c.close();
});
