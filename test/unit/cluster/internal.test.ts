// The in-process manager: placement, "up to n", release, expiry (fake clock), family isolation, refusals.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  InternalClusterManager, InvalidRequestError, ManagerClosedError, NoCapacityError, SlotTooLargeError, TicketExpiredError,
  TicketInUseError, TicketReleasedError, TooManyClonesError, UnknownTicketError, WrongFamilyError,
  type TicketRequest,
} from '../../../lib/cluster/index.js';

const small = (n: number, family = 'vm-a'): TicketRequest => ({ family, n, vcpusPerClone: 1, memoryMiBPerClone: 512 });

function cluster(hosts: Record<string, [vcpus: number, memoryMiB: number]>, ttlMs?: number): InternalClusterManager {
  const m = new InternalClusterManager({ ticketTtlMs: ttlMs, maxClonesPerTicket: 64 });
  for (const [name, [vcpus, memoryMiB]] of Object.entries(hosts)) m.registerHost({ name, vcpus, memoryMiB });
  return m;
}

async function used(m: InternalClusterManager): Promise<Record<string, [number, number]>> {
  const d = await m.describe();
  return Object.fromEntries(d.hosts!.map((h) => [h.name, [h.usedVcpus, h.usedMemoryMiB]]));
}

describe('InternalClusterManager grants', () => {
  it('grants n slots, spread over hosts before doubling up', async () => {
    const m = cluster({ h1: [4, 4096], h2: [4, 4096], h3: [4, 4096] });
    const t = await m.requestTicket(small(4));
    expect(t.granted).toHaveLength(4);
    expect(t.requested).toBe(4);
    expect(new Set(t.granted.slice(0, 3).map((s) => s.host))).toEqual(new Set(['h1', 'h2', 'h3']));
    expect(t.granted.every((s) => s.vcpus === 1 && s.memoryMiB === 512)).toBe(true);
    expect(t.state).toBe('granted');
    expect(t.family).toBe('vm-a');
    expect(t.hierarchical).toBe(false);
    const u = await used(m);
    expect(Object.values(u).reduce((a, [v]) => a + v, 0)).toBe(4);
  });

  it('gives fewer than n when capacity is short, and counts memory as well as vCPUs', async () => {
    // h1 has vCPUs for 4 clones but memory for 2; h2 vCPUs for 1.
    const m = cluster({ h1: [4, 1024], h2: [1, 8192] });
    const t = await m.requestTicket(small(8));
    expect(t.requested).toBe(8);
    expect(t.granted.map((s) => s.host).sort()).toEqual(['h1', 'h1', 'h2']);
    expect(await used(m)).toEqual({ h1: [2, 1024], h2: [1, 512] });
  });

  it('a second family gets what the first left, then nothing', async () => {
    const m = cluster({ h1: [2, 4096], h2: [2, 4096] });
    expect((await m.requestTicket(small(3, 'vm-a'))).granted).toHaveLength(3);
    expect((await m.requestTicket(small(3, 'vm-b'))).granted).toHaveLength(1);
    await expect(m.requestTicket(small(1, 'vm-c'))).rejects.toThrow(NoCapacityError);
  });

  it('places multi-vCPU clones only where they fit whole', async () => {
    const m = cluster({ big: [8, 16384], small: [1, 16384] });
    const t = await m.requestTicket({ family: 'vm-a', n: 3, vcpusPerClone: 4, memoryMiBPerClone: 1024, hierarchical: true });
    expect(t.granted).toEqual([{ host: 'big', vcpus: 4, memoryMiB: 1024 }, { host: 'big', vcpus: 4, memoryMiB: 1024 }]);
    expect(t.hierarchical).toBe(true);
  });

  it('returns snapshots a caller cannot use to change the books', async () => {
    const m = cluster({ h1: [2, 2048] });
    const t = await m.requestTicket(small(1));
    expect(Object.isFrozen(t)).toBe(true);
    expect(Object.isFrozen(t.granted[0])).toBe(true);
    expect((await m.describe()).tickets).toEqual([t]);
  });
});

describe('InternalClusterManager release', () => {
  it('release, join and kill each give the slots back and end the ticket', async () => {
    const m = cluster({ h1: [3, 4096] });
    const tickets = [await m.requestTicket(small(1)), await m.requestTicket(small(1)), await m.requestTicket(small(1))];
    await expect(m.requestTicket(small(1))).rejects.toThrow(NoCapacityError);
    await m.useTicket(tickets[1]!.id, 'vm-a');
    await m.releaseTicket(tickets[0]!.id, 'vm-a');
    await m.releaseTicket(tickets[1]!.id, 'vm-a', 'join');
    await m.releaseTicket(tickets[2]!.id, 'vm-a', 'kill');
    expect(await used(m)).toEqual({ h1: [0, 0] });
    expect((await m.describe()).tickets).toEqual([]);
    await expect(m.releaseTicket(tickets[1]!.id, 'vm-a')).rejects.toThrow(/already released \(join\)/);
    await expect(m.useTicket(tickets[2]!.id, 'vm-a')).rejects.toThrow(TicketReleasedError);
    expect((await m.requestTicket(small(5))).granted).toHaveLength(3);
  });

  it('a ticket clones once', async () => {
    const m = cluster({ h1: [2, 4096] });
    const t = await m.requestTicket(small(2));
    const inUse = await m.useTicket(t.id, 'vm-a');
    expect(inUse.state).toBe('in-use');
    expect(inUse.expiresAt).toBeNull();
    await expect(m.useTicket(t.id, 'vm-a')).rejects.toThrow(TicketInUseError);
  });

  it('close gives everything back and grants nothing more', async () => {
    const m = cluster({ h1: [2, 4096] });
    await m.requestTicket(small(2));
    await m.close();
    expect(await used(m)).toEqual({ h1: [0, 0] });
    await expect(m.requestTicket(small(1))).rejects.toThrow(ManagerClosedError);
  });

  it('a host holding slots cannot be removed; an idle one can', async () => {
    const m = cluster({ h1: [2, 4096], h2: [2, 4096] });
    await m.requestTicket(small(1));
    const busy = Object.entries(await used(m)).find(([, [v]]) => v > 0)![0];
    const idle = busy === 'h1' ? 'h2' : 'h1';
    expect(() => m.removeHost(busy)).toThrow(/still holds granted slots/);
    m.removeHost(idle);
    expect((await m.describe()).hosts!.map((h) => h.name)).toEqual([busy]);
  });
});

describe('InternalClusterManager expiry', () => {
  beforeEach(() => void vi.useFakeTimers({ now: new Date('2030-01-01T00:00:00Z') }));
  afterEach(() => void vi.useRealTimers());

  it('an unused ticket expires after the TTL and its slots return', async () => {
    const m = cluster({ h1: [2, 4096] }, 60_000);
    const t = await m.requestTicket(small(2));
    expect(t.expiresAt).toBe(t.issuedAt + 60_000);
    vi.advanceTimersByTime(59_999);
    expect((await m.describe()).tickets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect((await m.describe()).tickets).toHaveLength(0);
    expect(await used(m)).toEqual({ h1: [0, 0] });
    await expect(m.useTicket(t.id, 'vm-a')).rejects.toThrow(TicketExpiredError);
    await expect(m.releaseTicket(t.id, 'vm-a')).rejects.toThrow(/expired before it was used/);
  });

  it('the default TTL is 10 minutes', async () => {
    const m = cluster({ h1: [2, 4096] });
    const t = await m.requestTicket(small(1));
    expect(t.expiresAt! - t.issuedAt).toBe(10 * 60_000);
  });

  it('a ticket in use does not expire', async () => {
    const m = cluster({ h1: [2, 4096] }, 1_000);
    const t = await m.requestTicket(small(1));
    await m.useTicket(t.id, 'vm-a');
    vi.advanceTimersByTime(3_600_000);
    expect((await m.describe()).tickets.map((x) => x.id)).toEqual([t.id]);
    expect(await used(m)).toEqual({ h1: [1, 512] });
  });

  it('the deadline counts even when the timer has not run yet', async () => {
    const m = cluster({ h1: [2, 4096] }, 1_000);
    const t = await m.requestTicket(small(1));
    vi.setSystemTime(Date.now() + 5_000); // moves the clock without running timers
    await expect(m.useTicket(t.id, 'vm-a')).rejects.toThrow(TicketExpiredError);
    expect(await used(m)).toEqual({ h1: [0, 0] });
  });
});

describe('InternalClusterManager family isolation', () => {
  it('another family can neither use nor release a ticket, and the owner still can', async () => {
    const m = cluster({ h1: [2, 4096] });
    const t = await m.requestTicket(small(1, 'vm-a'));
    await expect(m.useTicket(t.id, 'vm-b')).rejects.toThrow(WrongFamilyError);
    await expect(m.releaseTicket(t.id, 'vm-b', 'kill')).rejects.toThrow(/not granted to family vm-b/);
    expect(await used(m)).toEqual({ h1: [1, 512] });
    await m.useTicket(t.id, 'vm-a');
    await m.releaseTicket(t.id, 'vm-a', 'join');
  });
});

describe('InternalClusterManager refusals', () => {
  const m = cluster({ h1: [2, 4096] });

  it.each([
    [{ n: 0 }, 'n', /n must be a positive integer, got 0/],
    [{ n: -3 }, 'n', /got -3/],
    [{ n: 1.5 }, 'n', /got 1.5/],
    [{ vcpusPerClone: 0 }, 'vcpusPerClone', /vcpusPerClone must be a positive integer/],
    [{ memoryMiBPerClone: NaN }, 'memoryMiBPerClone', /memoryMiBPerClone/],
    [{ family: '' }, 'family', /family must be/],
    [{ family: 'a b' }, 'family', /family must be/],
    [{ hierarchical: 'yes' }, 'hierarchical', /true or false/],
  ])('%o is an invalid request naming %s', async (patch, field, message) => {
    const err = await m.requestTicket({ ...small(1), ...patch } as TicketRequest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as InvalidRequestError).field).toBe(field);
    expect((err as InvalidRequestError).code).toBe('invalid-request');
    expect(String(err)).toMatch(message);
  });

  it('n above the per-ticket limit is refused, not clipped', async () => {
    const err = await m.requestTicket(small(65)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TooManyClonesError);
    expect(String(err)).toMatch(/65 clones .* limit is 64/);
  });

  it('a clone bigger than any host is refused as such', async () => {
    await expect(m.requestTicket({ family: 'vm-a', n: 1, vcpusPerClone: 4, memoryMiBPerClone: 512 })).rejects.toThrow(SlotTooLargeError);
    await expect(m.requestTicket({ family: 'vm-a', n: 1, vcpusPerClone: 1, memoryMiBPerClone: 8192 })).rejects.toThrow(/can ever hold a clone of 1 vCPUs and 8192 MiB/);
  });

  it('no hosts at all means no capacity', async () => {
    await expect(new InternalClusterManager().requestTicket(small(1))).rejects.toThrow(/no hosts are registered/);
  });

  it('unknown tickets are named', async () => {
    await expect(m.useTicket('t-nope', 'vm-a')).rejects.toThrow(UnknownTicketError);
    await expect(m.releaseTicket('t-nope', 'vm-a')).rejects.toThrow('no such ticket: t-nope');
  });

  it('a refused request holds nothing', async () => {
    expect(await used(m)).toEqual({ h1: [0, 0] });
    expect((await m.describe()).tickets).toEqual([]);
  });

  it('host registration checks its input', () => {
    expect(() => m.registerHost({ name: 'h1', vcpus: 1, memoryMiB: 1 })).toThrow(/already registered/);
    expect(() => m.registerHost({ name: 'h2', vcpus: 0, memoryMiB: 1 })).toThrow(/vcpus must be a positive integer/);
    expect(() => m.removeHost('h9')).toThrow(/no host h9/);
  });
});
