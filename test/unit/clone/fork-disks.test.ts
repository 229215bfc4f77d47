// What a fork records about its disks: the parent's vbds in the descriptor, the slices' fronts
// in the fork image in clear, and the fork's keys for them sealed like the memserver key.
import { describe, expect, it } from 'vitest';
import { deflateRawSync } from 'node:zlib';
import { decodeDescriptor, encodeDescriptor } from '../../../lib/descriptor/format.js';
import { checkDiskForkExports, diskKeysSecret, withDiskKeys, type DiskForkExport } from '../../../lib/clone/fork-disks.js';
import { parseImage } from '../../../lib/daemon/xen-backend.js';
import { reseal } from '../../../lib/daemon/image-secrets.js';
import { seal, unseal } from '../../../lib/daemon/seal.js';
import { newPsk } from '../../../lib/disk/psk.js';
import { sampleDescriptor } from '../../fixtures/descriptor.js';

const FORK = 'f-0123456789abcdef';
const VBD = { devid: 51712, vdev: 'xvda', mode: 'w', family: 'deb', vm: 'deb67', disk: 'xvda' };
const EXPORT: DiskForkExport = {
  family: 'deb', fork: FORK, host: '10.99.0.1', port: 40555, psk: newPsk(FORK),
  exports: [{ vm: 'deb67', disk: 'xvda', name: 'xvda', sizeBytes: 2 ** 30 }],
};
const address = ({ psk: _psk, ...rest }: DiskForkExport) => rest;

describe('a fork\'s disks in the descriptor', () => {
  it('keeps the parent\'s family disks through encode and decode', () => {
    const d = sampleDescriptor();
    d.meta.vbds = [VBD];
    expect(decodeDescriptor(encodeDescriptor(d)).meta.vbds).toEqual([VBD]);
  });

  it('refuses vbds that would reach QMP or xenstore with a bad name', () => {
    for (const [bad, why] of [
      [{ ...VBD, family: '../x' }, /bad vbd/], [{ ...VBD, vdev: 'xvda/../..' }, /bad vbd/], [{ ...VBD, mode: 'rw' }, /bad vbd/],
      [{ ...VBD, devid: -1 }, /bad vbd/], [{ ...VBD, disk: '' }, /bad vbd/],
    ] as const) {
      const d = sampleDescriptor();
      d.meta.vbds = [bad as typeof VBD];
      expect(() => decodeDescriptor(encodeDescriptor(d))).toThrow(why);
    }
    const d = sampleDescriptor();
    d.meta.vbds = [VBD, { ...VBD, disk: 'xvdb' }];
    expect(() => decodeDescriptor(encodeDescriptor(d))).toThrow(/two vbds with one device number/);
  });
});

describe('a fork\'s disk keys in the fork image', () => {
  const hostA = Buffer.alloc(32, 1);
  const cluster = Buffer.alloc(32, 2);
  const hostB = Buffer.alloc(32, 3);

  it('travel sealed to a host, are resealed by the master, and open only on the host they are sealed to', () => {
    const image = { disks: [address(EXPORT)], sealedDiskKeys: seal(hostA, diskKeysSecret([EXPORT]), FORK) };
    expect(JSON.stringify(image)).not.toContain(EXPORT.psk.key);
    const atMaster = reseal(image, FORK, hostA, cluster, 'host A');
    const toB = reseal(atMaster, FORK, cluster, hostB, 'the master');
    const opened = withDiskKeys(checkDiskForkExports(toB.disks, 'fork image'), unseal(hostB, toB.sealedDiskKeys as string, FORK));
    expect(opened).toEqual([EXPORT]);
    expect(() => unseal(hostA, toB.sealedDiskKeys as string, FORK)).toThrow(/does not open/);
    expect(() => unseal(hostB, toB.sealedDiskKeys as string, 'f-another')).toThrow(/does not open/);
  });

  it('parseImage gives the clone host the exports with their keys', () => {
    const encoded = encodeDescriptor(sampleDescriptor());
    const base = {
      format: 'snowflock-fork-image/2', parentName: 'deb67', descriptor: deflateRawSync(encoded).toString('base64'),
      memserver: { host: '10.99.0.1', port: 40123 }, sealedToken: seal(hostB, Buffer.alloc(32, 0xab), FORK),
    };
    expect(parseImage(base, hostB, FORK).disks).toEqual([]);
    const withDisks = { ...base, disks: [address(EXPORT)], sealedDiskKeys: seal(hostB, diskKeysSecret([EXPORT]), FORK) };
    expect(parseImage(withDisks, hostB, FORK).disks).toEqual([EXPORT]);
    expect(() => parseImage({ ...withDisks, sealedDiskKeys: undefined }, hostB, FORK)).toThrow(/sealed disk keys missing/);
    expect(() => parseImage({ ...withDisks, sealedDiskKeys: seal(hostA, diskKeysSecret([EXPORT]), FORK) }, hostB, FORK)).toThrow(/disk keys: sealed secret does not open/);
    expect(() => parseImage({ ...withDisks, disks: [{ ...address(EXPORT), port: 0 }] }, hostB, FORK)).toThrow(/disk export 0: bad port/);
    expect(() => parseImage({ ...withDisks, disks: [{ ...address(EXPORT), family: 'other' }] }, hostB, FORK)).toThrow(/no key for the disks of family other/);
  });

  it('refuses malformed exports and keys', () => {
    expect(() => checkDiskForkExports({}, 'img')).toThrow(/disks is not a list/);
    expect(() => checkDiskForkExports([{ ...address(EXPORT), host: 'a b' }], 'img')).toThrow(/bad host/);
    expect(() => checkDiskForkExports([{ ...address(EXPORT), exports: [{ vm: '../x', disk: 'xvda', name: 'xvda', sizeBytes: 1 }] }], 'img')).toThrow(/bad exports/);
    const badKey = Buffer.from(JSON.stringify([{ family: 'deb', identity: 'snowflock-x', key: 'short' }]));
    expect(() => withDiskKeys([address(EXPORT)], badKey)).toThrow(/64 lowercase hex/);
    expect(() => withDiskKeys([address(EXPORT)], Buffer.from('not json'))).toThrow(/not JSON/);
  });
});
