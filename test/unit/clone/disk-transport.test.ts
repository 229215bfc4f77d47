// A fork's disks over mcdist in its record: the slice sessions (they hold session keys) travel
// only inside the sealed disk keys, never with the addresses in clear; what arrives is checked.
import { describe, expect, it } from 'vitest';
import { checkSliceSessions, parseBlockTransport } from '../../../lib/clone/disk-transport.js';
import { checkDiskForkExports, diskKeysSecret, withDiskKeys, type DiskForkExport } from '../../../lib/clone/fork-disks.js';
import { newPsk } from '../../../lib/disk/psk.js';
import { createSession, encodeSession } from '../../../lib/mcdist/session.js';

const FORK = 'f-mc';
const session = createSession({ blockSize: 32 * 1024, blockCount: 32, serverAddress: '10.99.0.1' });
const SLICE = { session: encodeSession(session), name: 'xvda', sizeBytes: 32 * 32 * 1024 };
const EXPORT: DiskForkExport = {
  family: 'deb', fork: FORK, host: '10.99.0.1', port: 40555, psk: newPsk(FORK),
  exports: [{ vm: 'deb67', disk: 'xvda', name: 'xvda', sizeBytes: SLICE.sizeBytes }],
  mcdist: [SLICE], blocks: [{ vm: 'deb67', disk: 'xvda', blocks: 'mcdist' }],
};

describe('a fork\'s mcdist sessions', () => {
  it('travel with the sealed keys and come back with them; the addresses hold no session key', () => {
    const { psk: _psk, mcdist: _sessions, ...address } = EXPORT;
    expect(JSON.stringify(checkDiskForkExports([address], 'image'))).not.toContain(session.key.toString('base64'));
    const back = withDiskKeys(checkDiskForkExports([address], 'image'), diskKeysSecret([EXPORT]));
    expect(back[0]!.mcdist).toEqual([SLICE]);
    expect(back[0]!.psk).toEqual(EXPORT.psk);
  });

  it('a fork without them has none (its clones read the front)', () => {
    const { mcdist: _sessions, ...front } = EXPORT;
    const { psk: _psk, ...address } = front;
    expect(withDiskKeys([address], diskKeysSecret([front]))[0]!.mcdist).toBeUndefined();
  });

  it('malformed sessions are refused by name', () => {
    expect(() => checkSliceSessions({}, 'deb')).toThrow(/mcdist sessions of family deb are not a list/);
    expect(() => checkSliceSessions([{ name: 'xvda', sizeBytes: 1 }], 'deb')).toThrow(/mcdist session 0 of family deb is malformed/);
    const shortKey = encodeSession({ ...session, key: Buffer.alloc(32) }).replace(/"key":"[^"]*"/, '"key":"AAAA"');
    expect(() => checkSliceSessions([{ ...SLICE, session: shortKey }], 'deb')).toThrow(/session key must be at least 16 bytes/);
  });

  it('the transport option takes front or mcdist only', () => {
    expect(parseBlockTransport('mcdist')).toBe('mcdist');
    expect(parseBlockTransport('front')).toBe('front');
    expect(() => parseBlockTransport('tcp')).toThrow(/unknown disk transport tcp \(front or mcdist\)/);
  });
});
