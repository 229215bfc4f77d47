import { createSession, type Session, wireKeys } from '../../../lib/mcdist/session.js';
import type { WireKeys } from '../../../lib/mcdist/wire.js';

/** A small loopback-only session: TTL 0 keeps any multicast on this host. */
export function testSession(overrides: Partial<Parameters<typeof createSession>[0]> = {}): Session {
  return createSession({ blockCount: 64, blockSize: 4096, serverAddress: '127.0.0.1', ttl: 0, ...overrides });
}

export function keysOf(s: Session): WireKeys {
  return wireKeys(s);
}

/** Deterministic PRNG for fuzzing, so a failure can be replayed from its seed. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}
