import { describe, expect, it } from 'vitest';
import { deflateRawSync } from 'node:zlib';
import { encodeDescriptor } from '../../../lib/descriptor/format.js';
import { MAX_IMAGE_BYTES } from '../../../lib/daemon/messages.js';
import { parseImage } from '../../../lib/daemon/xen-backend.js';
import { sampleDescriptor } from '../../fixtures/descriptor.js';

const encoded = encodeDescriptor(sampleDescriptor());
const good = {
  format: 'snowflock-fork-image/1',
  parentName: 'web-1',
  descriptor: deflateRawSync(encoded).toString('base64'),
  memserver: { host: '10.99.0.1', port: 40123 },
  token: 'ab'.repeat(32),
};

describe('the fork image the Xen backend sends to clone hosts', () => {
  it('carries the whole descriptor, deflated, well inside the image limit', () => {
    const r = parseImage(good);
    expect(encodeDescriptor(r.descriptor).equals(encoded)).toBe(true);
    expect(r.memserver).toEqual({ host: '10.99.0.1', port: 40123 });
    expect(r.parentName).toBe('web-1');
    expect(JSON.stringify(good).length).toBeLessThan(MAX_IMAGE_BYTES);
  });

  it('refuses a damaged or foreign image, naming the part', () => {
    expect(() => parseImage({ ...good, format: 'other/1' })).toThrow(/format "other\/1"/);
    expect(() => parseImage({ ...good, memserver: { host: 'h' } })).toThrow(/memserver address/);
    expect(() => parseImage({ ...good, token: 'xyz' })).toThrow(/memserver key/);
    expect(() => parseImage({ ...good, descriptor: undefined })).toThrow(/descriptor missing/);
    expect(() => parseImage({ ...good, descriptor: Buffer.from('not deflate').toString('base64') })).toThrow(/does not inflate/);
    const flipped = Buffer.from(encoded);
    flipped[flipped.length - 100]! ^= 0xff;
    expect(() => parseImage({ ...good, descriptor: deflateRawSync(flipped).toString('base64') })).toThrow();
  });

  it('never lets a parent name it did not check into clone names', () => {
    expect(parseImage({ ...good, parentName: '../../etc' }).parentName).toBe('clone');
  });
});
