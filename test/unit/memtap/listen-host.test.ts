// Where a fork's memserver listens: the daemons' --advertise address (the cluster interface
// clones on other hosts are told to reach), 127.0.0.1 for `snowflock clone`'s local clones,
// never every address unless asked. Capture and the memserver process are stubbed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DomainInfo, XenControl } from '../../../lib/xen/native.js';
import { memoryStore } from '../../memory-xenstore.js';
import { serverFixture } from './server-fixture.js';

const fx = serverFixture();
const started: Record<string, unknown>[] = [];
vi.mock('../../../lib/descriptor/capture.js', () => ({
  captureDescriptor: async () => ({ descriptor: fx.descriptor, resumeParent: () => {} }),
}));
vi.mock('../../../lib/memtap/spawn.js', () => ({
  startMemServer: async (o: Record<string, unknown>) => (started.push(o), { pid: 999_999_999, port: 4567, event: { event: 'listening' } }),
}));

const tmp = mkdtempSync(join(tmpdir(), 'sf-listen-'));
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
  rmSync(fx.dir, { recursive: true, force: true });
});
beforeEach(() => void started.splice(0));
const xc = { domainInfo: () => ({ domid: 7, type: 'pvh', uuid: '11111111-2222-3333-4444-555555555555' }) as DomainInfo } as unknown as XenControl;

describe('memserver listen address', () => {
  it('captureFork: 127.0.0.1 unless a listen host is given', async () => {
    const { captureFork } = await import('../../../lib/clone/capture-fork.js');
    await captureFork(xc, memoryStore(), 7, { dir: mkdtempSync(join(tmp, 'a-')), clones: 1 });
    await captureFork(xc, memoryStore(), 7, { dir: mkdtempSync(join(tmp, 'b-')), clones: 1, listenHost: '10.0.0.7', insecurePlaintext: true });
    expect(started.map((o) => [o.host, o.insecurePlaintext])).toEqual([['127.0.0.1', undefined], ['10.0.0.7', true]]);
  });

  it("the Xen backend listens on its advertise address, and tells clones the same", async () => {
    const { XenBackend } = await import('../../../lib/daemon/xen-backend.js');
    const backend = new XenBackend(xc, memoryStore(), { advertiseHost: '10.0.0.7', hostKey: Buffer.alloc(32), stateDir: join(tmp, 'state') });
    const image = await backend.capture(7, { fork: 't-0123456789abcdef', clones: 2 } as Parameters<typeof backend.capture>[1]);
    expect(started.map((o) => o.host)).toEqual(['10.0.0.7']);
    expect(image.memserver).toEqual({ host: '10.0.0.7', port: 4567 });
  });
});
