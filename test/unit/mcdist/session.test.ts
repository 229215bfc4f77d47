import { describe, expect, it } from 'vitest';
import { createSession, decodeSession, deriveGroup, encodeSession } from '../../../lib/mcdist/session.js';
import { MAX_UDP_BLOCK_BYTES } from '../../../lib/mcdist/wire.js';

describe('sessions', () => {
  it('gives each session its own id, key, group and port', () => {
    const a = createSession({ blockCount: 10, serverAddress: '10.0.0.1' });
    const b = createSession({ blockCount: 10, serverAddress: '10.0.0.1' });
    expect(a.id).not.toBe(b.id);
    expect(a.key.equals(b.key)).toBe(false);
    expect(a.key.length).toBe(32);
    expect(a.group).toMatch(/^239\.(19[2-5])\.\d+\.\d+$/);
    expect(a.groupPort).toBeGreaterThanOrEqual(40000);
    expect(a.groupPort).toBeLessThan(50000);
    expect(deriveGroup(a.id)).toEqual({ group: a.group, port: a.groupPort });
  });

  it('spreads groups: 1000 sessions land on many different groups', () => {
    const groups = new Set<string>();
    for (let i = 0; i < 1000; i++) groups.add(createSession({ blockCount: 1, serverAddress: 'x' }).group);
    expect(groups.size).toBeGreaterThan(990);
  });

  it('round-trips through the descriptor handed to clones', () => {
    const s = { ...createSession({ blockCount: 123, blockSize: 512, serverAddress: '10.1.2.3', ttl: 2 }), requestPort: 4000, tcpPort: 4001 };
    expect(decodeSession(encodeSession(s))).toEqual(s);
  });

  it('refuses geometry that cannot travel in a datagram', () => {
    expect(() => createSession({ blockCount: 1, blockSize: MAX_UDP_BLOCK_BYTES + 1, serverAddress: 'x' })).toThrow(RangeError);
    expect(() => createSession({ blockCount: 1, blockSize: 0, serverAddress: 'x' })).toThrow(RangeError);
    expect(() => createSession({ blockCount: -1, serverAddress: 'x' })).toThrow(RangeError);
    expect(() => createSession({ blockCount: 1, serverAddress: 'x', id: 'nothex' })).toThrow(RangeError);
  });

  it('refuses malformed descriptors', () => {
    const good = JSON.parse(encodeSession(createSession({ blockCount: 1, serverAddress: 'x' }))) as Record<string, unknown>;
    expect(() => decodeSession(JSON.stringify({ ...good, blockSize: 'big' }))).toThrow(TypeError);
    expect(() => decodeSession(JSON.stringify({ ...good, transport: 'carrier-pigeon' }))).toThrow(TypeError);
    expect(() => decodeSession(JSON.stringify({ ...good, key: undefined }))).toThrow(TypeError);
  });
});
