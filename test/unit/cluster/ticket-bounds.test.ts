// A family cannot hoard tickets: each manager refuses a new ticket while the family holds
// maxTicketsPerFamily unused ones, and the master forgets an unused ticket when it expires
// (on time, not only when someone lists the families).
import { describe, expect, it, vi } from 'vitest';
import { InternalClusterManager, TooManyTicketsError } from '../../../lib/cluster/index.js';
import { lab } from '../daemon/helpers.js';

const req = (family: string) => ({ family, n: 1, vcpusPerClone: 1, memoryMiBPerClone: 64 });

describe('tickets per family', () => {
  it('the manager refuses a family its 5th unused ticket, not another family, and not once one is used', async () => {
    const m = new InternalClusterManager({ maxTicketsPerFamily: 4 });
    m.registerHost({ name: 'h1', vcpus: 64, memoryMiB: 65536 });
    const mine = [];
    for (let i = 0; i < 4; i++) mine.push(await m.requestTicket(req('vm-a')));
    await expect(m.requestTicket(req('vm-a'))).rejects.toBeInstanceOf(TooManyTicketsError);
    await expect(m.requestTicket(req('vm-b'))).resolves.toMatchObject({ family: 'vm-b' });
    await m.useTicket(mine[0]!.id, 'vm-a');
    await expect(m.requestTicket(req('vm-a'))).resolves.toMatchObject({ family: 'vm-a' });
    await m.close();
  });

  it('the master drops an expired spare ticket from the family when it expires', async () => {
    vi.useFakeTimers();
    try {
      const l = await lab({ ticketTtlMs: 1000 });
      await l.master.requestTicket(l.parent, { n: 1, vcpus: 1, memoryMiB: 512 });
      const spares = () => l.master['books'].family(l.parent)?.granted.size ?? 0;
      expect(spares()).toBe(1);
      await vi.advanceTimersByTimeAsync(1500);
      expect(spares()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
