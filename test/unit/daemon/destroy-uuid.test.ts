// A clone is destroyed by domid only while that domid still names the clone: once the clone is
// gone and Xen gave its domid to another domain, destroy leaves that domain and its xenstore alone.
import { describe, expect, it } from 'vitest';
import { destroyClone } from '../../../lib/descriptor/restore.js';
import { XenBackend } from '../../../lib/daemon/xen-backend.js';
import type { DomainInfo, XenControl } from '../../../lib/xen/native.js';
import { memoryStore } from '../../memory-xenstore.js';

const CLONE_UUID = '11111111-2222-3333-4444-555555555555';
const OTHER_UUID = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';

/** Xen with one live domain, 12, whose uuid is given; destroy() is recorded. */
function xenWith(uuid: string): XenControl & { destroyed: number[] } {
  const destroyed: number[] = [];
  let alive = true;
  return {
    destroyed,
    domainInfo: (domid: number) => {
      if (domid !== 12 || !alive) throw Object.assign(new Error(`no domain ${domid}`), { code: 'ESRCH' });
      return { domid, uuid, dying: false } as DomainInfo;
    },
    destroy: async (domid: number) => {
      destroyed.push(domid);
      alive = false;
    },
  } as unknown as XenControl & { destroyed: number[] };
}

describe('destroy checks the domain is still the clone', () => {
  it('destroyClone leaves a domain whose uuid is not the clone\'s, and its xenstore home', async () => {
    const xc = xenWith(OTHER_UUID);
    const xs = memoryStore();
    xs.write('/local/domain/12/name', 'unrelated');
    await destroyClone(xc, xs, 12, CLONE_UUID);
    expect(xc.destroyed).toEqual([]);
    expect(xs.read('/local/domain/12/name')).toBe('unrelated');
  });

  it('destroyClone destroys the clone when the uuid matches (any case)', async () => {
    const xc = xenWith(CLONE_UUID.toUpperCase());
    await destroyClone(xc, memoryStore(), 12, CLONE_UUID);
    expect(xc.destroyed).toEqual([12]);
  });

  it('the Xen backend forgets a clone whose domid now names another domain, without destroying it', async () => {
    const xc = xenWith(OTHER_UUID);
    const xs = memoryStore();
    xs.write('/local/domain/0/snowflock/daemon/clones/12', JSON.stringify({ fork: 't-0123456789abcdef', vmid: 1, uuid: CLONE_UUID }));
    const backend = new XenBackend(xc, xs, { advertiseHost: '127.0.0.1', hostKey: Buffer.alloc(32), stateDir: '/nonexistent' });
    await backend.destroy(12);
    expect(xc.destroyed).toEqual([]);
    expect(xs.read('/local/domain/0/snowflock/daemon/clones/12')).toBeNull();
  });
});
