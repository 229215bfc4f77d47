// Blocks are sealed (AES-256-GCM, block-seal.ts): what crosses the group holds no block in clear,
// and a receiver takes only what opens under its session key, once.
import { afterEach, describe, expect, it } from 'vitest';
import { BlockNonces, BlockReplayGuard, NONCE_BYTES } from '../../../lib/mcdist/block-seal.js';
import { McdistClient } from '../../../lib/mcdist/client.js';
import { DropReason, HEADER_BYTES, decode, encodeBlock } from '../../../lib/mcdist/wire.js';
import { keysOf, testSession } from './helpers.js';

const session = testSession({ blockCount: 16 });
const keys = keysOf(session);
const secret = Buffer.alloc(session.blockSize, 0x5a);
const datagram = (index = 1, nonces?: BlockNonces): Buffer => Buffer.concat(encodeBlock(keys, index, 1, secret, nonces));

const clients: McdistClient[] = [];
const client = (): McdistClient => {
  const c = new McdistClient(session, null, {});
  clients.push(c);
  return c;
};
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

describe('sealed mcdist blocks', () => {
  it('carry no block bytes in clear, and no two carry the same nonce', () => {
    const a = datagram();
    const b = datagram();
    expect(a.includes(secret.subarray(0, 64))).toBe(false);
    const nonceOf = (d: Buffer) => d.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES).toString('hex');
    expect(nonceOf(a)).not.toBe(nonceOf(b));
    expect(nonceOf(a).slice(0, 8)).toBe(nonceOf(b).slice(0, 8)); // one process, one prefix
    // the same block sealed twice differs on the wire (fresh nonce, so fresh keystream)
    expect(a.subarray(HEADER_BYTES + NONCE_BYTES).equals(b.subarray(HEADER_BYTES + NONCE_BYTES))).toBe(false);
  });

  it('a tampered block is refused and counted, in any byte after the header', () => {
    const good = datagram();
    for (const at of [HEADER_BYTES + 2, HEADER_BYTES + NONCE_BYTES + 100, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x01;
      expect(decode(bad, keys, 16)).toEqual({ ok: false, reason: DropReason.BadMac });
    }
    const c = client();
    const bad = Buffer.from(good);
    bad[HEADER_BYTES + NONCE_BYTES]! ^= 0x80;
    c.handleDatagram(bad);
    expect(c.has(1)).toBe(false);
    expect(c.stats().drops.badMac).toBe(1);
  });

  it('a block sealed under another key (same session id) is refused', () => {
    const forged = Buffer.concat(encodeBlock({ ...keys, key: Buffer.alloc(32, 9) }, 1, 1, secret));
    expect(decode(forged, keys, 16)).toEqual({ ok: false, reason: DropReason.BadMac });
    const c = client();
    c.handleDatagram(forged);
    expect(c.stats().drops.badMac).toBe(1);
    expect(c.stats().blocksReceived).toBe(0);
  });

  it('a replayed block is refused and counted; a fresh send of the same block is a duplicate', () => {
    const c = client();
    const d = datagram(2);
    c.handleDatagram(d);
    c.handleDatagram(d);
    c.handleDatagram(datagram(2));
    const s = c.stats();
    expect(s.blocksReceived).toBe(1);
    expect(s.drops.replayed).toBe(1);
    expect(s.duplicates).toBe(1);
  });

  it('the replay window: nonces that overtook each other pass once, one older than the window never', () => {
    const n = new BlockNonces(7);
    const sent = Array.from({ length: 300 }, () => n.next());
    const g = new BlockReplayGuard();
    expect(g.admit(sent[1]!)).toBe(true);
    expect(g.admit(sent[0]!)).toBe(true); // reordered
    expect(g.admit(sent[0]!)).toBe(false);
    expect(g.admit(sent[299]!)).toBe(true);
    expect(g.admit(sent[2]!)).toBe(false); // 297 behind: outside the 256 window
    expect(g.admit(sent[298]!)).toBe(true);
    // another sender's counters are its own
    expect(g.admit(new BlockNonces(8).next())).toBe(true);
  });
});
