import { describe, expect, it } from 'vitest';
import { deflateRawSync } from 'node:zlib';
import { encodeDescriptor } from '../../../lib/descriptor/format.js';
import { MAX_IMAGE_BYTES } from '../../../lib/daemon/messages.js';
import { parseImage } from '../../../lib/daemon/xen-backend.js';
import { seal } from '../../../lib/daemon/seal.js';
import { sampleDescriptor } from '../../fixtures/descriptor.js';

const encoded = encodeDescriptor(sampleDescriptor());
const key = Buffer.alloc(32, 7);
const FORK = 'f-0123456789abcdef';
const good = {
  format: 'snowflock-fork-image/2',
  parentName: 'web-1',
  descriptor: deflateRawSync(encoded).toString('base64'),
  memserver: { host: '10.99.0.1', port: 40123 },
  sealedToken: seal(key, Buffer.alloc(32, 0xab), FORK),
};
const parse = (image: Record<string, unknown>) => parseImage(image, key, FORK);

describe('the fork image the Xen backend sends to clone hosts', () => {
  it('carries the whole descriptor, deflated, well inside the image limit', () => {
    const r = parse(good);
    expect(encodeDescriptor(r.descriptor).equals(encoded)).toBe(true);
    expect(r.memserver).toEqual({ host: '10.99.0.1', port: 40123 });
    expect(r.parentName).toBe('web-1');
    expect(r.token).toBe('ab'.repeat(32));
    expect(JSON.stringify(good).length).toBeLessThan(MAX_IMAGE_BYTES);
    expect(JSON.stringify(good)).not.toContain('ab'.repeat(32)); // the memserver key does not travel in clear
  });

  it('refuses a damaged or foreign image, naming the part', () => {
    expect(() => parse({ ...good, format: 'other/1' })).toThrow(/format "other\/1"/);
    expect(() => parse({ ...good, memserver: { host: 'h' } })).toThrow(/memserver address/);
    expect(() => parse({ ...good, sealedToken: undefined })).toThrow(/sealed memserver key missing/);
    expect(() => parse({ ...good, sealedToken: 'xyz' })).toThrow(/memserver key: not a sealed secret/);
    expect(() => parseImage(good, Buffer.alloc(32, 8), FORK)).toThrow(/memserver key: sealed secret does not open/);
    expect(() => parseImage(good, key, 'f-another')).toThrow(/does not open/);
    expect(() => parse({ ...good, sealedToken: seal(key, Buffer.alloc(16), FORK) })).toThrow(/wrong length/);
    expect(() => parse({ ...good, descriptor: undefined })).toThrow(/descriptor missing/);
    expect(() => parse({ ...good, descriptor: Buffer.from('not deflate').toString('base64') })).toThrow(/does not inflate/);
    const flipped = Buffer.from(encoded);
    flipped[flipped.length - 100]! ^= 0xff;
    expect(() => parse({ ...good, descriptor: deflateRawSync(flipped).toString('base64') })).toThrow();
  });

  it('never lets a parent name it did not check into clone names', () => {
    expect(parse({ ...good, parentName: '../../etc' }).parentName).toBe('clone');
  });
});
