// The daemons' key handshake over real loopback sockets, and the key file's rules.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { authenticateHost, authenticateToMaster, proof } from '../../../lib/daemon/auth.js';
import { readKeyFile, writeKeyFile } from '../../../lib/daemon/key.js';
import { deriveHostKey } from '../../../lib/daemon/host-key.js';
import { request } from '../../../lib/daemon/protocol.js';
import { socketPair } from './socket-pair.js';

const key = randomBytes(32);
const h1Key = deriveHostKey(key, 'h1');

describe('handshake', () => {
  it('both sides prove the key; the master learns the host name', async () => {
    const p = await socketPair();
    const [name] = await Promise.all([authenticateHost(p.master, key), authenticateToMaster(p.host, h1Key, 'h1')]);
    expect(name).toBe('h1');
    expect(p.master.closed || p.host.closed).toBe(false);
    p.done();
  });

  it('a host with the wrong key is refused by the master', async () => {
    const p = await socketPair();
    const [m, h] = await Promise.allSettled([authenticateHost(p.master, key), authenticateToMaster(p.host, randomBytes(32), 'h1')]);
    // The host already rejects the master's proof (made with the other key), so both sides fail.
    expect(m).toMatchObject({ status: 'rejected', reason: { code: 'auth-failed' } });
    expect(h).toMatchObject({ status: 'rejected', reason: { code: 'auth-failed', message: expect.stringMatching(/could not prove/) } });
    p.done();
  });

  it('a peer that replays a proof made for other nonces is refused', async () => {
    const p = await socketPair();
    const refused = authenticateHost(p.master, key);
    p.host.send(request(0, 'hello', { role: 'host', host: 'h1', nonce: 'a'.repeat(64), link: 'aes-256-gcm-v1', identity: 'host-key-v1' }));
    const challenge = await p.host.next(5000);
    expect(challenge).toMatchObject({ ok: true, value: { type: 'challenge' } });
    // a proof recorded from some earlier handshake (other nonces) does not match this one
    p.host.send(request(0, 'auth', { proof: proof(h1Key, 'host', 'h1', 'b'.repeat(64), 'a'.repeat(64)) }));
    await expect(refused).rejects.toMatchObject({ code: 'auth-failed', message: expect.stringMatching(/host h1 could not prove it holds host h1's key/) });
    expect(await p.host.next(5000)).toMatchObject({ ok: true, value: { type: 'error', error: { code: 'auth-failed' } } });
    p.done();
  });

  it('a peer that skips the handshake gets not-authenticated and is dropped', async () => {
    const p = await socketPair();
    const refused = authenticateHost(p.master, key);
    p.host.send(request(1, 'request_ticket', { domid: 1, n: 1, vcpus: 1, memoryMiB: 1 }));
    await expect(refused).rejects.toMatchObject({ code: 'not-authenticated' });
    expect(await p.host.next(5000)).toMatchObject({ ok: true, value: { type: 'error', error: { code: 'not-authenticated' } } });
    await new Promise<void>((r) => p.host.onClose(() => r()));
    p.done();
  });

  it('a hello of another version is refused as such', async () => {
    const p = await socketPair();
    const refused = authenticateHost(p.master, key);
    p.host.send({ v: 2, id: 0, type: 'hello', role: 'host', host: 'h1', nonce: 'a'.repeat(64) });
    await expect(refused).rejects.toMatchObject({ code: 'version-mismatch' });
    expect(await p.host.next(5000)).toMatchObject({ ok: true, value: { error: { code: 'version-mismatch' } } });
    p.done();
  });

  it('proofs are bound to direction, host and both nonces', () => {
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    const base = proof(key, 'host', 'h1', a, b);
    expect(proof(key, 'master', 'h1', a, b)).not.toBe(base);
    expect(proof(key, 'host', 'h2', a, b)).not.toBe(base);
    expect(proof(key, 'host', 'h1', b, a)).not.toBe(base);
    expect(proof(key, 'host', 'h1', a, b)).toBe(base);
  });
});

describe('key file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-key-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keygen writes 32 random bytes as hex, mode 600, and will not overwrite', () => {
    const path = join(dir, 'k1');
    const k = writeKeyFile(path);
    expect(k).toHaveLength(32);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8').trim()).toBe(k.toString('hex'));
    expect(readKeyFile(path)).toEqual(k);
    expect(() => writeKeyFile(path)).toThrow(/EEXIST/);
  });

  it('refuses a key others can read, a short key, and a missing file', () => {
    const open = join(dir, 'k2');
    writeFileSync(open, 'ab'.repeat(32), { mode: 0o644 });
    chmodSync(open, 0o644);
    expect(() => readKeyFile(open)).toThrow(/accessible to group or others \(mode 644\); run chmod 600/);
    const short = join(dir, 'k3');
    writeFileSync(short, 'abcd', { mode: 0o600 });
    expect(() => readKeyFile(short)).toThrow(/must hold 64 hex digits/);
    expect(() => readKeyFile(join(dir, 'nope'))).toThrow(/cannot read cluster key file/);
  });
});
