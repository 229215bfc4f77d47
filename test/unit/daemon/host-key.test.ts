// Per-host identities: each host proves a key derived from the cluster key and its name, so a
// host's name is its key's, and a host holding one host's key cannot speak for another.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { authenticateHost, authenticateToMaster } from '../../../lib/daemon/auth.js';
import { deriveHostKey, readHostCredential, writeHostKeyFile } from '../../../lib/daemon/host-key.js';
import { readKeyFile, writeKeyFile } from '../../../lib/daemon/key.js';
import { socketPair } from './socket-pair.js';

const key = randomBytes(32);

describe('host keys at the handshake', () => {
  it('a host proves its own key; the master learns the name from it', async () => {
    const p = await socketPair();
    const [name] = await Promise.all([authenticateHost(p.master, key), authenticateToMaster(p.host, deriveHostKey(key, 'hostB'), 'hostB')]);
    expect(name).toBe('hostB');
    p.done();
  });

  it('a host key for B cannot register as A: the handshake fails on both sides', async () => {
    const p = await socketPair();
    const [m, h] = await Promise.allSettled([authenticateHost(p.master, key), authenticateToMaster(p.host, deriveHostKey(key, 'hostB'), 'hostA')]);
    // The master proves A's key, which B's key cannot check, so the host hangs up first.
    expect(h).toMatchObject({ status: 'rejected', reason: { code: 'auth-failed', message: expect.stringMatching(/could not prove it holds host hostA's key/) } });
    expect(m).toMatchObject({ status: 'rejected', reason: { code: 'auth-failed' } });
    p.done();
  });

  it('the cluster key itself proves no host: hosts prove derived keys', async () => {
    const p = await socketPair();
    const [m] = await Promise.allSettled([authenticateHost(p.master, key), authenticateToMaster(p.host, key, 'hostA')]);
    expect(m).toMatchObject({ status: 'rejected', reason: { code: 'auth-failed' } });
    p.done();
  });

  it('keys differ per name and per cluster key, and are 32 bytes', () => {
    const a = deriveHostKey(key, 'hostA');
    expect(a).toHaveLength(32);
    expect(deriveHostKey(key, 'hostA')).toEqual(a);
    expect(deriveHostKey(key, 'hostB')).not.toEqual(a);
    expect(deriveHostKey(randomBytes(32), 'hostA')).not.toEqual(a);
    expect(a).not.toEqual(key);
  });
});

describe('host key file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-hostkey-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('holds the name and the derived key, mode 600, and is not overwritten', () => {
    const path = join(dir, 'b.key');
    const k = writeHostKeyFile(path, key, 'hostB');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toBe(`snowflock-host-key v1 hostB ${deriveHostKey(key, 'hostB').toString('hex')}\n`);
    expect(readHostCredential(path, undefined)).toEqual({ host: 'hostB', key: k, from: 'host-key' });
    expect(readHostCredential(path, 'hostB').host).toBe('hostB');
    expect(() => writeHostKeyFile(path, key, 'hostB')).toThrow(/EEXIST/);
    expect(() => writeHostKeyFile(join(dir, 'bad.key'), key, 'no spaces')).toThrow(/host name/);
  });

  it('B\'s key file under the name A is refused, naming both', () => {
    const path = join(dir, 'b2.key');
    writeHostKeyFile(path, key, 'hostB');
    expect(() => readHostCredential(path, 'hostA')).toThrow(/is host hostB's, not hostA's/);
  });

  it('the cluster key file still works for a host that names itself, and the master refuses a host key', () => {
    const cluster = join(dir, 'cluster.key');
    const k = writeKeyFile(cluster);
    expect(readHostCredential(cluster, 'hostA')).toEqual({ host: 'hostA', key: deriveHostKey(k, 'hostA'), from: 'cluster' });
    expect(() => readHostCredential(cluster, undefined)).toThrow(/is the cluster key: say which host this is with --name/);
    const hostFile = join(dir, 'a.key');
    writeHostKeyFile(hostFile, k, 'hostA');
    expect(() => readKeyFile(hostFile)).toThrow(/holds a host key .*the master needs the cluster key/);
  });

  it('refuses a file others can read and one of another format', () => {
    const open = join(dir, 'open.key');
    writeHostKeyFile(open, key, 'hostC');
    chmodSync(open, 0o644);
    expect(() => readHostCredential(open, undefined)).toThrow(/accessible to group or others/);
    const junk = join(dir, 'junk.key');
    writeFileSync(junk, 'snowflock-host-key v1 hostC 1234\n', { mode: 0o600 });
    expect(() => readHostCredential(junk, undefined)).toThrow(/must hold "snowflock-host-key v1 <name> <64 hex digits>"/);
  });
});
