/**
 * End to end on this host's loopback only: the server binds 127.0.0.1 and
 * multicasts with TTL 0 through lo, clients join on 127.0.0.1. Nothing
 * reaches a real network.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { McdistClient } from '../../../lib/mcdist/client.js';
import { probeMulticast } from '../../../lib/mcdist/probe.js';
import { PatternSource, patternBlock } from '../../../lib/mcdist/source.js';
import { type DistributionServer, openClient, startServer } from '../../../lib/mcdist/transport.js';
import type { BlockClient } from '../../../lib/mcdist/types.js';
import { MessageType, type RequestMessage, decode, encodeBlock } from '../../../lib/mcdist/wire.js';
import { keysOf, testSession } from './helpers.js';

const SEED = 11;
const logs: string[] = [];
const log = (m: string): void => { logs.push(m); };
const open: { close(): Promise<void> }[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
  logs.length = 0;
});

async function serve(blockCount: number, transport: 'auto' | 'multicast' | 'tcp' = 'multicast'): Promise<DistributionServer> {
  const session = testSession({ blockCount });
  const server = await startServer(session, new PatternSource(blockCount, session.blockSize, SEED), { transport, log });
  open.push(server);
  return server;
}

async function fetchAll(client: BlockClient, indices: number[]): Promise<number> {
  let mismatches = 0;
  await Promise.all(indices.map(async (i) => {
    if (!(await client.fetch(i)).equals(patternBlock(SEED, i, 4096))) mismatches++;
  }));
  return mismatches;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('mcdist over loopback', () => {
  it('serves two multicast clients; the second gets most blocks as prefetch', async () => {
    const server = await serve(256);
    const a = await openClient(server.session, { interfaceAddress: '127.0.0.1', transport: 'multicast', log });
    const b = await openClient(server.session, { interfaceAddress: '127.0.0.1', transport: 'multicast', log });
    open.push(a, b);
    expect(await fetchAll(a, range(256))).toBe(0);
    expect(await fetchAll(b, range(256))).toBe(0);
    expect(a.stats().blocksReceived).toBe(256);
    expect(b.stats().blocksReceived).toBe(256);
    // b heard a's replies: it asked for few blocks, if any.
    expect(b.stats().prefetched).toBeGreaterThan(200);
    expect(server.stats().blocksSent).toBeLessThan(2 * 256);
  });

  it('serves the same blocks over the TCP fallback', async () => {
    const server = await serve(300, 'tcp');
    expect(server.session.transport).toBe('tcp');
    const c = await openClient(server.session, { log });
    open.push(c);
    expect(c.transport).toBe('tcp');
    expect(await fetchAll(c, range(300).reverse())).toBe(0);
    expect(c.stats()).toMatchObject({ blocksReceived: 300, requestsSent: 300 });
    expect(server.stats()).toMatchObject({ transport: 'tcp', requestsReceived: 300, blocksSent: 300 });
    expect(logs.join('\n')).toMatch(/client using unicast TCP/);
  });

  it('falls back to TCP, and says so, when the client cannot join the group', async () => {
    const server = await serve(32);
    // 203.0.113.0/24 is TEST-NET-3: no interface here has it, so the join fails locally.
    const c = await openClient(server.session, { interfaceAddress: '203.0.113.77', log });
    open.push(c);
    expect(c.transport).toBe('tcp');
    expect(await fetchAll(c, range(32))).toBe(0);
    expect(logs.join('\n')).toMatch(/cannot join .*unicast TCP/);
  });

  it('switches to TCP when the group stays silent', async () => {
    const server = await serve(32);
    // The client listens on a group nobody sends to: multicast "works" but delivers nothing.
    const deaf = { ...server.session, group: '239.255.254.253' };
    const c = await openClient(deaf, { interfaceAddress: '127.0.0.1', silenceMs: 200, log });
    open.push(c);
    expect(await fetchAll(c, range(32))).toBe(0);
    expect(c.transport).toBe('tcp');
    expect(logs.join('\n')).toMatch(/nothing received .*switching to unicast TCP/);
  });

  it('requests carry the client\'s view of the group and are retransmitted until answered', async () => {
    // A bare socket stands in for the server, to read what the client sends.
    const server = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => server.bind(0, '127.0.0.1', () => resolve()));
    const session = { ...testSession({ blockCount: 64, retransmitMs: 20 }), requestPort: server.address().port };
    const keys = keysOf(session);
    const requests: RequestMessage[] = [];
    server.on('message', (buf) => {
      const r = decode(buf, keys, 64);
      if (r.ok && r.msg.type === MessageType.Request) requests.push(r.msg);
    });
    const client = await McdistClient.open(session, { interfaceAddress: '127.0.0.1' });
    open.push(client);
    for (const seq of [5, 6, 7]) client.handleDatagram(Buffer.concat(encodeBlock(keys, seq, seq, Buffer.alloc(8))));
    const wanted = client.fetch(20);
    await until(() => requests.length >= 3);
    expect(requests[0]).toMatchObject({ index: 20, firstSeq: 5, seenSeq: 7, attempt: 0 });
    expect(requests.slice(1).map((r) => r.attempt)).toEqual(expect.arrayContaining([1, 2]));
    expect(requests.every((r) => r.index === 20)).toBe(true);
    client.handleDatagram(Buffer.concat(encodeBlock(keys, 20, 8, Buffer.from('answer'))));
    expect((await wanted).toString()).toBe('answer');
    const sent = requests.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(requests.length).toBe(sent); // answered: no more retransmissions
    expect(client.stats().retransmits).toBe(sent - 1);
    server.close();
  });

  it.each(['multicast', 'tcp'] as const)('serves a source whose reads are promises over %s; a failed read is asked again', async (transport) => {
    const session = testSession({ blockCount: 128 });
    const pattern = new PatternSource(128, session.blockSize, SEED);
    const failed = new Set<number>();
    // a disk read: later, and block 5's first read fails
    const source = {
      count: 128,
      read: (i: number) => new Promise<Buffer>((resolve, reject) => setTimeout(() => {
        if (i === 5 && !failed.has(i)) {
          failed.add(i);
          reject(new Error('slice read failed'));
        } else {
          resolve(pattern.read(i));
        }
      }, i % 3)),
    };
    const server = await startServer(session, source, { transport, log });
    open.push(server);
    const indices = range(128).filter((i) => transport === 'multicast' || i !== 5);
    const a = await openClient(server.session, { interfaceAddress: '127.0.0.1', transport, log });
    open.push(a);
    expect(await fetchAll(a, indices)).toBe(0);
    expect(a.stats().blocksReceived).toBe(indices.length);
    if (transport === 'multicast') {
      expect(logs.some((m) => /block 5 not sent: slice read failed/.test(m))).toBe(true);
    } else {
      // TCP does not retransmit: the connection is dropped, so the fetch fails instead of waiting
      await expect(a.fetch(5)).rejects.toThrow(/connection to server lost/);
      expect(logs.some((m) => /block 5 cannot be read \(slice read failed\); dropping the connection/.test(m))).toBe(true);
    }
  });

  it('probes multicast on loopback', async () => {
    expect(await probeMulticast({ interfaceAddress: '127.0.0.1' })).toEqual({ available: true });
    const r = await probeMulticast({ interfaceAddress: '203.0.113.77' });
    expect(r.available).toBe(false);
    expect(r.reason).toMatch(/cannot join/);
  });
});
