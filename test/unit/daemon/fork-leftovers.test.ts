// A fork that fails leaves nothing on the parent's host: the host daemon tells its backend to
// abandon the fork (abort, a capture the master gave up on, a lost master link), and the Xen
// backend's leftovers (memserver process, the fork's directory with the parent's memory) go.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeBackend } from '../../../lib/daemon/fake-backend.js';
import { ForkLeftovers } from '../../../lib/daemon/fork-leftovers.js';
import { HostCommandRunner } from '../../../lib/daemon/host-commands.js';
import { XenBackend } from '../../../lib/daemon/xen-backend.js';
import type { DomainInfo, XenControl } from '../../../lib/xen/native.js';
import { memoryStore } from '../../memory-xenstore.js';

const tmp = mkdtempSync(join(tmpdir(), 'sf-leftovers-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const fork = (id: string) => ({ fork: id, family: 'h1:7', clones: 2 });

describe('the host daemon abandons a failed fork on the parent\'s host', () => {
  it('on abort, on a capture the fork was abandoned during, and when the master link is lost', async () => {
    const fake = new FakeBackend('h1');
    fake.addParent(7);
    fake.addParent(8);
    fake.addParent(9);
    const runner = new HostCommandRunner(fake);
    await runner.run('capture', { parent: 7, fork: fork('t-a') });
    await runner.run('abort', { fork: 't-a' });
    expect(fake.abandoned).toEqual(['t-a']);
    await runner.run('capture', { parent: 8, fork: fork('t-b') });
    await runner.linkLost();
    expect(fake.abandoned).toEqual(['t-a', 't-b']);
    await runner.run('capture', { parent: 9, fork: fork('t-c') });
    await runner.run('release', { parent: 9, fork: fork('t-c') }); // a fork that went well keeps its memserver
    expect(fake.abandoned).toEqual(['t-a', 't-b']);
  });
});

describe('the Xen backend\'s leftovers of a fork', () => {
  it('discarding a fork stops its memserver and removes its directory, the parent\'s memory with it', async () => {
    const dir = join(tmp, 'families', 't-0123456789abcdef');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'parent.mem'), Buffer.alloc(4096));
    // a stand-in memserver: its command line names the fork's directory, as the real one's does
    const memserver = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', dir], { stdio: 'ignore' });
    await new Promise((r) => memserver.once('spawn', r));
    const leftovers = new ForkLeftovers();
    leftovers.started('t-0123456789abcdef', memserver.pid!, dir);
    await leftovers.discard('t-0123456789abcdef');
    await new Promise((r) => (memserver.exitCode !== null || memserver.signalCode !== null ? r(null) : memserver.once('exit', r)));
    expect(memserver.signalCode).toBe('SIGTERM');
    expect(existsSync(dir)).toBe(false);
    await leftovers.discard('t-0123456789abcdef'); // idempotent
  });

  it('a capture that fails removes the fork\'s directory', async () => {
    const stateDir = join(tmp, 'state');
    const dir = join(stateDir, 'families', 't-fedcba9876543210');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'parent.mem'), Buffer.alloc(4096)); // as far as a capture got
    const xc = {
      domainInfo: () => ({ domid: 7, type: 'pvh', uuid: '11111111-2222-3333-4444-555555555555' }) as DomainInfo,
      captureState: () => Promise.reject(new Error('capture failed on purpose')),
      pause: () => { throw new Error('pause failed on purpose'); },
    } as unknown as XenControl;
    const backend = new XenBackend(xc, memoryStore(), { advertiseHost: '127.0.0.1', hostKey: Buffer.alloc(32), stateDir });
    await expect(backend.capture(7, fork('t-fedcba9876543210'))).rejects.toThrow();
    expect(existsSync(dir)).toBe(false);
  });
});
