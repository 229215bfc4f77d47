/**
 * Requests are authenticated by the session key, but a MAC alone does not stop someone on the
 * path from sending a recorded request again: each replay would make the server multicast a
 * block, and a replayed "lost" request cuts its rate. Every request carries its client's
 * request number; the server takes each number once (in a sliding window), and a session never
 * runs with an empty key.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { McdistServer } from '../../../lib/mcdist/server.js';
import { createSession, decodeSession, encodeSession, wireKeys } from '../../../lib/mcdist/session.js';
import { PatternSource } from '../../../lib/mcdist/source.js';
import { TcpBlockServer } from '../../../lib/mcdist/tcp-fallback.js';
import { ReplayGuard, REPLAY_WINDOW } from '../../../lib/mcdist/replay.js';
import { BLOCK_OVERHEAD_BYTES, encodeRequest } from '../../../lib/mcdist/wire.js';
import { keysOf, testSession } from './helpers.js';

const toClose: { close(): Promise<void> }[] = [];
afterEach(async () => { await Promise.all(toClose.splice(0).map((x) => x.close())); });

const session = testSession({ blockCount: 8 });
const keys = keysOf(session);
const request = (counter: number, clientId = 7, index = 3): Buffer => Buffer.concat(encodeRequest(keys, {
  index, seenSeq: 0, firstSeq: 0, clientId, rxRateKiBps: 0, attempt: 0, quietMs: 0, counter,
}));

function server(): McdistServer {
  const s = new McdistServer(session, new PatternSource(8, session.blockSize, 1), null);
  toClose.push(s);
  return s;
}

describe('replayed requests', () => {
  it('are dropped by the multicast server and counted', () => {
    const s = server();
    const req = request(1);
    s.handleDatagram(req, 0);
    s.handleDatagram(req, 1);
    s.handleDatagram(Buffer.from(req), 2);
    expect(s.stats().requestsReceived).toBe(1);
    expect(s.stats().drops.replayed).toBe(2);
  });

  it('keep each client apart, take numbers out of order within the window, and refuse 0 and older ones', () => {
    const s = server();
    for (const [counter, clientId] of [[5, 1], [5, 2], [3, 1], [4, 1], [REPLAY_WINDOW + 10, 1]]) s.handleDatagram(request(counter!, clientId), 0);
    expect(s.stats().requestsReceived).toBe(5);
    for (const [counter, clientId] of [[3, 1], [0, 3], [9, 1], [5, 2]]) s.handleDatagram(request(counter!, clientId), 0);
    expect(s.stats().requestsReceived).toBe(5);
    expect(s.stats().drops.replayed).toBe(4);
  });

  it('the window forgets the oldest clients past its bound, never the newest', () => {
    const g = new ReplayGuard(2);
    expect(g.admit(1, 1)).toBe(true);
    expect(g.admit(2, 1)).toBe(true);
    expect(g.admit(3, 1)).toBe(true);
    expect(g.admit(3, 1)).toBe(false);
    expect(g.admit(2, 1)).toBe(false);
    expect(g.clients).toBe(2);
  });

  it('get no block from the TCP fallback, on the same or another connection', async () => {
    const tcp = await TcpBlockServer.start(session, new PatternSource(8, session.blockSize, 1));
    toClose.push(tcp);
    const replies = async (frames: Buffer[]): Promise<number> => {
      const sock = net.connect(tcp.session.tcpPort, '127.0.0.1');
      let bytes = 0;
      sock.on('data', (d: Buffer) => { bytes += d.length; });
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      for (const f of frames) sock.write(f);
      await new Promise((r) => setTimeout(r, 200));
      sock.destroy();
      return bytes / (BLOCK_OVERHEAD_BYTES + session.blockSize);
    };
    expect(await replies([request(1, 9), request(1, 9)])).toBe(1);
    expect(await replies([request(1, 9)])).toBe(0);
    expect(tcp.stats().drops.replayed).toBe(2);
  });
});

describe('session keys', () => {
  it('an empty or short key is refused wherever a session is made or used', () => {
    expect(() => createSession({ blockCount: 1, serverAddress: 'x', key: Buffer.alloc(0) })).toThrow(/session key must be at least 16 bytes, got 0/);
    const good = JSON.parse(encodeSession(createSession({ blockCount: 1, serverAddress: 'x' }))) as Record<string, unknown>;
    expect(() => decodeSession(JSON.stringify({ ...good, key: '' }))).toThrow(/session key must be at least 16 bytes/);
    expect(() => wireKeys({ ...session, key: Buffer.alloc(8) })).toThrow(/session key must be at least 16 bytes, got 8/);
    expect(() => new McdistServer({ ...session, key: Buffer.alloc(0) }, new PatternSource(8, session.blockSize, 1), null)).toThrow(/session key/);
  });
});
