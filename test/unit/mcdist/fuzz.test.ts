/**
 * Bad datagrams must be counted and dropped, never crash and never be used.
 * 100,000 random and mutated datagrams go straight into a client's and a
 * server's handler; a few thousand more travel over real loopback sockets.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { McdistClient } from '../../../lib/mcdist/client.js';
import { McdistServer } from '../../../lib/mcdist/server.js';
import { type Session } from '../../../lib/mcdist/session.js';
import { PatternSource } from '../../../lib/mcdist/source.js';
import { TcpBlockClient, TcpBlockServer } from '../../../lib/mcdist/tcp-fallback.js';
import {
  type DropCounters, HEADER_BYTES, MAC_BYTES, type WireKeys, encodeBlock, encodeRequest, totalDrops,
} from '../../../lib/mcdist/wire.js';
import { keysOf, rng, testSession } from './helpers.js';

const FUZZ_COUNT = 100_000;
const BLOCKS = 64;

type Kind = 'block' | 'request';

/** A valid message of the given kind, to mutate. */
function valid(keys: WireKeys, kind: Kind, rand: () => number, index = Math.floor(rand() * BLOCKS)): Buffer {
  return kind === 'block'
    ? Buffer.concat(encodeBlock(keys, index, 1 + Math.floor(rand() * 1000), Buffer.alloc(1 + Math.floor(rand() * 4096), 7)))
    : Buffer.concat(encodeRequest(keys, {
      index, seenSeq: 0, firstSeq: 0, clientId: 1, rxRateKiBps: 0, attempt: 0, quietMs: 0, counter: 1,
    }));
}

/**
 * One bad datagram. Every case changes something the MAC covers or the
 * decoder checks before it, so none can be accepted.
 */
function badDatagram(keys: WireKeys, other: WireKeys, kind: Kind, rand: () => number): Buffer {
  const pick = Math.floor(rand() * 10);
  const base = valid(keys, kind, rand);
  switch (pick) {
    case 0: { // random garbage of random length
      const b = Buffer.alloc(Math.floor(rand() * 9000));
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
      return b;
    }
    case 1: // truncated anywhere
      return base.subarray(0, Math.floor(rand() * base.length));
    case 2: // extended with junk
      return Buffer.concat([base, Buffer.alloc(1 + Math.floor(rand() * 64), 0x5a)]);
    case 3: { // flip 1..8 random bits
      const b = Buffer.from(base);
      const flips = 1 + Math.floor(rand() * 8);
      const at = new Set<number>();
      while (at.size < flips) at.add(Math.floor(rand() * b.length * 8));
      for (const bit of at) b[bit >> 3]! ^= 1 << (bit & 7);
      return b;
    }
    case 4: { // rewrite one header field with a random value
      const b = Buffer.from(base);
      const offsets = [0, 2, 3, 4, 12, 16, 20];
      const at = offsets[Math.floor(rand() * offsets.length)]!;
      const before = b.readUInt32BE(Math.min(at, b.length - 4));
      do b.writeUInt32BE(Math.floor(rand() * 0x100000000), Math.min(at, b.length - 4));
      while (b.readUInt32BE(Math.min(at, b.length - 4)) === before);
      return b;
    }
    case 5: // authentic, but the block number is outside the session
      return valid(keys, kind, rand, BLOCKS + Math.floor(rand() * 0xffff0000));
    case 6: // another session's message
      return valid(other, kind, rand);
    case 7: // our session id, someone else's key
      return valid({ ...other, sessionId: keys.sessionId }, kind, rand);
    case 8: // authentic message of the wrong direction
      return valid(keys, kind === 'block' ? 'request' : 'block', rand);
    default: { // a header that announces a body it does not carry
      const b = Buffer.from(base);
      b.writeUInt32BE(b.readUInt32BE(20) + 1 + Math.floor(rand() * 1000), 20);
      return b;
    }
  }
}

const toClose: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(toClose.splice(0).map((x) => x.close()));
});

/** Every reason but replays: a bad datagram never gets as far (replay.test.ts covers them). */
function expectEveryReason(drops: DropCounters, except: (keyof DropCounters)[]): void {
  for (const [reason, n] of Object.entries(drops)) {
    if (reason === 'replayed') continue;
    if (!except.includes(reason as keyof DropCounters)) expect(n, reason).toBeGreaterThan(0);
  }
}

describe('fuzzing the datagram handlers', () => {
  const session = testSession({ blockCount: BLOCKS });
  const keys = keysOf(session);
  const other = keysOf(testSession({ blockCount: BLOCKS }));

  it(`client: ${FUZZ_COUNT} bad datagrams are all dropped and counted`, async () => {
    const client = new McdistClient(session, null);
    toClose.push(client);
    const rand = rng(1234);
    for (let i = 0; i < FUZZ_COUNT; i++) client.handleDatagram(badDatagram(keys, other, 'block', rand));
    const s = client.stats();
    expect(s.blocksReceived).toBe(0);
    expect(totalDrops(s.drops)).toBe(FUZZ_COUNT);
    expectEveryReason(s.drops, ['testDropped']);
    // Still works afterwards.
    const p = client.fetch(3);
    client.handleDatagram(Buffer.concat(encodeBlock(keys, 3, 1, Buffer.from('ok'))));
    expect((await p).toString()).toBe('ok');
  }, 60_000);

  it(`server: ${FUZZ_COUNT} bad datagrams are all dropped and counted`, async () => {
    const server = new McdistServer(session, new PatternSource(BLOCKS, session.blockSize, 1), null);
    toClose.push(server);
    const rand = rng(5678);
    for (let i = 0; i < FUZZ_COUNT; i++) server.handleDatagram(badDatagram(keys, other, 'request', rand));
    const s = server.stats();
    expect(s.requestsReceived).toBe(0);
    expect(server.backlog).toBe(0);
    expect(totalDrops(s.drops)).toBe(FUZZ_COUNT);
    expectEveryReason(s.drops, ['testDropped']);
    server.handleDatagram(valid(keys, 'request', rand, 1));
    expect(server.stats().requestsReceived).toBe(1);
  }, 60_000);
});

async function until(cond: () => boolean, describe: () => string = () => '', ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met in time ${describe()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Send datagrams to a loopback port in bursts small enough for the receiving
 * socket's buffer, waiting for each burst to be counted: the receiver runs in
 * this process, so a lost datagram here would be our pacing, not its bug.
 */
async function spray(port: number, datagrams: Buffer[], counted: () => number): Promise<void> {
  const sock = dgram.createSocket('udp4');
  const start = counted();
  for (let i = 0; i < datagrams.length; i += 20) {
    const burst = datagrams.slice(i, i + 20);
    await Promise.all(burst.map((d) => new Promise<void>((resolve) => sock.send(d, port, '127.0.0.1', () => resolve()))));
    const want = start + i + burst.length;
    await until(() => counted() === want, () => `${counted() - start} of ${i + burst.length} counted`);
  }
  sock.close();
}

describe('fuzzing over real loopback sockets', () => {
  const SENT = 3000;

  it('a running server drops garbage on its request port and keeps serving', async () => {
    const draft = testSession({ blockCount: BLOCKS });
    const server = await McdistServer.start(draft, new PatternSource(BLOCKS, draft.blockSize, 1));
    toClose.push(server);
    const rand = rng(99);
    const keys = keysOf(server.session);
    const other = keysOf(testSession({ blockCount: BLOCKS }));
    // UDP refuses zero-length and over-64K payloads itself; keep to what can be sent.
    const bad = Array.from({ length: SENT }, () => badDatagram(keys, other, 'request', rand))
      .filter((d) => d.length > 0 && d.length < 65000);
    await spray(server.session.requestPort, bad, () => totalDrops(server.stats().drops));
    expect(totalDrops(server.stats().drops)).toBe(bad.length);
    expectEveryReason(server.stats().drops, ['testDropped']);
    expect(server.stats().requestsReceived).toBe(0);

    const client = await McdistClient.open(server.session, { interfaceAddress: '127.0.0.1' });
    toClose.push(client);
    expect((await client.fetch(5)).length).toBe(server.session.blockSize);
  });

  it('a joined client drops garbage sent to the group port', async () => {
    const session: Session = { ...testSession({ blockCount: BLOCKS }), requestPort: 9 };
    const client = await McdistClient.open(session, { interfaceAddress: '127.0.0.1' });
    toClose.push(client);
    const rand = rng(7);
    const bad = Array.from({ length: SENT }, () => badDatagram(keysOf(session), keysOf(testSession()), 'block', rand))
      .filter((d) => d.length > 0 && d.length < 65000);
    await spray(session.groupPort, bad, () => totalDrops(client.stats().drops));
    expect(totalDrops(client.stats().drops)).toBe(bad.length);
    expectEveryReason(client.stats().drops, ['testDropped']);
    expect(client.stats().blocksReceived).toBe(0);
  });

  it('the TCP server drops a garbage stream, and the next connection is served', async () => {
    const draft = testSession({ blockCount: BLOCKS });
    const server = await TcpBlockServer.start(draft, new PatternSource(BLOCKS, draft.blockSize, 1));
    toClose.push(server);
    const rand = rng(3);
    for (let round = 0; round < 20; round++) {
      const sock = net.connect(server.session.tcpPort, '127.0.0.1');
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      const junk = Buffer.alloc(HEADER_BYTES + Math.floor(rand() * 5000));
      for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(rand() * 256);
      junk.writeUInt16BE(0xdead, 0); // never our magic, so the stream is out of step at once
      sock.end(junk);
      await new Promise<void>((resolve) => sock.once('close', () => resolve()));
    }
    // A frame that is well formed but forged is dropped without closing the connection.
    const forged = valid(keysOf(testSession({ blockCount: BLOCKS, id: server.session.id })), 'request', rand, 1);
    const s1 = net.connect(server.session.tcpPort, '127.0.0.1');
    s1.write(forged);
    await until(() => server.stats().drops.badMac === 1);
    s1.destroy();
    expect(server.stats().drops.badMagic).toBe(20);

    const client = await TcpBlockClient.open(server.session);
    toClose.push(client);
    expect((await client.fetch(2)).length).toBe(draft.blockSize);
    expect(server.stats().requestsReceived).toBe(1);
  });

  it('refuses a TCP frame header announcing more than any legal message', async () => {
    const draft = testSession({ blockCount: BLOCKS });
    const server = await TcpBlockServer.start(draft, new PatternSource(BLOCKS, draft.blockSize, 1));
    toClose.push(server);
    const header = Buffer.concat(encodeRequest(keysOf(draft), {
      index: 0, seenSeq: 0, firstSeq: 0, clientId: 0, rxRateKiBps: 0, attempt: 0, quietMs: 0, counter: 1,
    })).subarray(0, HEADER_BYTES);
    header.writeUInt32BE(0x7fffffff - MAC_BYTES, 20);
    const sock = net.connect(server.session.tcpPort, '127.0.0.1');
    sock.write(header);
    await new Promise<void>((resolve) => sock.once('close', () => resolve()));
    expect(server.stats().drops.badLength).toBe(1);
  });
});
