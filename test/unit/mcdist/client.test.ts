import { afterEach, describe, expect, it } from 'vitest';
import { McdistClient } from '../../../lib/mcdist/client.js';
import { BlockCollector } from '../../../lib/mcdist/collector.js';
import type { Block } from '../../../lib/mcdist/types.js';
import { encodeBlock } from '../../../lib/mcdist/wire.js';
import { keysOf, testSession } from './helpers.js';

const session = testSession({ blockCount: 4096 });
const block = (index: number, seq = index + 1, s = session): Buffer =>
  Buffer.concat(encodeBlock(keysOf(s), index, seq, Buffer.alloc(s.blockSize, index & 0xff)));

const clients: McdistClient[] = [];
function client(onBatch?: (b: readonly Block[]) => void): McdistClient {
  const c = new McdistClient(session, null, { onBatch });
  clients.push(c);
  return c;
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

describe('McdistClient receive path', () => {
  it('keeps blocks it did not ask for and hands them over 1024 at a time', () => {
    const batches: number[][] = [];
    const c = client((b) => batches.push(b.map((x) => x.index)));
    for (let i = 0; i < 2100; i++) c.handleDatagram(block(i));
    expect(batches.map((b) => b.length)).toEqual([1024, 1024]);
    expect(batches[0]![0]).toBe(0);
    expect(c.has(2047)).toBe(true);
    expect(c.has(2048)).toBe(false); // still in the current batch
    const s = c.stats();
    expect(s.blocksReceived).toBe(2100);
    expect(s.prefetched).toBe(2100);
    expect(s.batches).toBe(2);
  });

  it('delivers the batch early when a block someone waits for arrives', async () => {
    const batches: number[][] = [];
    const c = client((b) => batches.push(b.map((x) => x.index)));
    c.handleDatagram(block(1));
    c.handleDatagram(block(2));
    const waiting = c.fetch(3);
    expect(batches).toEqual([]);
    c.handleDatagram(block(3));
    expect(batches).toEqual([[1, 2, 3]]);
    expect((await waiting).equals(Buffer.alloc(4096, 3))).toBe(true);
    expect(c.stats().prefetched).toBe(2);
  });

  it('hands the batch over before resolving the waiter', async () => {
    const order: string[] = [];
    const c = client(() => order.push('batch'));
    const p = c.fetch(7).then(() => order.push('resolved'));
    c.handleDatagram(block(7));
    await p;
    expect(order).toEqual(['batch', 'resolved']);
  });

  it('answers a fetch of a prefetched block from the batch, flushing it', async () => {
    const batches: number[][] = [];
    const c = client((b) => batches.push(b.map((x) => x.index)));
    c.handleDatagram(block(9));
    const got = await c.fetch(9);
    expect(got.equals(Buffer.alloc(4096, 9))).toBe(true);
    expect(batches).toEqual([[9]]);
    expect(c.stats().requestsSent).toBe(0);
  });

  it('counts duplicates and keeps the first copy', () => {
    const c = client();
    c.handleDatagram(block(4, 1));
    c.handleDatagram(block(4, 2));
    expect(c.stats()).toMatchObject({ blocksReceived: 1, duplicates: 1 });
  });

  it('does not consume another session\'s blocks, even on the same group and port', () => {
    const other = testSession({ blockCount: 4096, group: session.group, groupPort: session.groupPort });
    const c = client();
    for (let i = 0; i < 100; i++) c.handleDatagram(block(i, i + 1, other));
    // Same session id but another key: what a forged or corrupted datagram looks like.
    const forged = { ...other, id: session.id };
    for (let i = 0; i < 50; i++) c.handleDatagram(block(i, i + 1, forged));
    const s = c.stats();
    expect(s.blocksReceived).toBe(0);
    expect(s.drops.wrongSession).toBe(100);
    expect(s.drops.badMac).toBe(50);
  });

  it('rejects fetches outside the session and after close', async () => {
    const c = client();
    await expect(c.fetch(4096)).rejects.toThrow(RangeError);
    await expect(c.fetch(-1)).rejects.toThrow(RangeError);
    const pending = c.fetch(1);
    await c.close();
    await expect(pending).rejects.toThrow(/closed/);
    await expect(c.fetch(1)).rejects.toThrow(/closed/);
  });

  it('survives an onBatch that throws', async () => {
    const logged: string[] = [];
    const c = new McdistClient(session, null, { onBatch: () => { throw new Error('consumer bug'); }, log: (m) => logged.push(m) });
    clients.push(c);
    const p = c.fetch(1);
    c.handleDatagram(block(1));
    expect((await p).length).toBe(4096);
    expect(logged.join()).toMatch(/consumer bug/);
  });

  it('drops the configured share of datagrams when testDropRate is set', () => {
    const c = new McdistClient(session, null, { testDropRate: 0.3 });
    clients.push(c);
    for (let i = 0; i < 4000; i++) c.handleDatagram(block(i));
    const { drops, blocksReceived } = c.stats();
    expect(drops.testDropped + blocksReceived).toBe(4000);
    expect(drops.testDropped).toBeGreaterThan(1000);
    expect(drops.testDropped).toBeLessThan(1400);
  });
});

describe('BlockCollector', () => {
  it('honours a custom batch limit', () => {
    const sizes: number[] = [];
    const c = new BlockCollector(100, (b) => sizes.push(b.length), 10);
    for (let i = 0; i < 25; i++) c.add(i, Buffer.alloc(1));
    c.flush();
    expect(sizes).toEqual([10, 10, 5]);
  });

  it('wakes every waiter of a block', async () => {
    const c = new BlockCollector(10, undefined);
    const a = c.wait(3);
    const b = c.wait(3);
    c.add(3, Buffer.from('x'));
    expect((await a).toString()).toBe('x');
    expect((await b).toString()).toBe('x');
  });
});
