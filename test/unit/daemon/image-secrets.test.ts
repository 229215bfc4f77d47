// A fork image's secrets are sealed to one host's key: the master re-seals them from the parent's
// host to itself (cluster key), then to each clone's host, and leaves the rest of the image alone.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveHostKey } from '../../../lib/daemon/host-key.js';
import { reseal } from '../../../lib/daemon/image-secrets.js';
import { seal, unseal } from '../../../lib/daemon/seal.js';

const cluster = randomBytes(32);
const [a, b, c] = ['hostA', 'hostB', 'hostC'].map((h) => deriveHostKey(cluster, h));
const secret = randomBytes(32);

describe('fork image secrets between hosts', () => {
  it('sealed by the parent\'s host, open only on the clone\'s host they were re-sealed for', () => {
    const captured = { format: 'x', sealedToken: seal(a!, secret, 'f1'), memserver: { port: 1 } };
    const held = reseal(captured, 'f1', a!, cluster, 'hostA');
    expect(unseal(cluster, held.sealedToken as string, 'f1')).toEqual(secret);
    const toB = reseal(held, 'f1', cluster, b!, 'the fork image');
    expect(toB).toMatchObject({ format: 'x', memserver: { port: 1 } });
    expect(unseal(b!, toB.sealedToken as string, 'f1')).toEqual(secret);
    expect(() => unseal(c!, toB.sealedToken as string, 'f1')).toThrow(/does not open/);
    expect(() => unseal(a!, toB.sealedToken as string, 'f1')).toThrow(/does not open/);
  });

  it('a secret not sealed to the sending host\'s key is refused, naming the field and host', () => {
    const captured = { sealedToken: seal(b!, secret, 'f1') };
    expect(() => reseal(captured, 'f1', a!, cluster, 'host hostA\'s capture')).toThrow(/fork f1: sealedToken of host hostA's capture does not open/);
    expect(() => reseal({ sealedToken: seal(a!, secret, 'f2') }, 'f1', a!, cluster, 'hostA')).toThrow(/does not open/);
  });

  it('leaves images without sealed fields as they are', () => {
    const image = { fake: true, vcpus: 1, sealedCount: 3 };
    expect(reseal(image, 'f1', a!, cluster, 'hostA')).toEqual(image);
  });
});
