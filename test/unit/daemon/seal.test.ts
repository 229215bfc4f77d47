import { describe, expect, it } from 'vitest';
import { seal, unseal, SealError } from '../../../lib/daemon/seal.js';

const key = Buffer.alloc(32, 1);
const secret = Buffer.from('memserver key bytes, 32 of them!');

describe('secrets sealed into fork images', () => {
  it('open with the cluster key for the fork they were sealed for', () => {
    const sealed = seal(key, secret, 'fork-1');
    expect(sealed).toMatch(/^v1\.[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(unseal(key, sealed, 'fork-1').equals(secret)).toBe(true);
  });
  it('differ each time (fresh nonce)', () => {
    expect(seal(key, secret, 'f')).not.toBe(seal(key, secret, 'f'));
  });
  it('refuse another key, another fork, and any altered part', () => {
    const sealed = seal(key, secret, 'fork-1');
    expect(() => unseal(Buffer.alloc(32, 2), sealed, 'fork-1')).toThrow(SealError);
    expect(() => unseal(key, sealed, 'fork-2')).toThrow(/does not open/);
    const parts = sealed.split('.');
    for (const i of [1, 2, 3]) {
      const bytes = Buffer.from(parts[i]!, 'base64url');
      bytes[0]! ^= 1;
      const altered = parts.map((p, j) => (j === i ? bytes.toString('base64url') : p)).join('.');
      expect(() => unseal(key, altered, 'fork-1')).toThrow(SealError);
    }
    expect(() => unseal(key, 'v2.a.b.c', 'fork-1')).toThrow(/not a sealed secret/);
  });
});
