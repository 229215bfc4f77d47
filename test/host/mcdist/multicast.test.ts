/**
 * mcdist on a real (virtual) network: one namespace per host on a Linux
 * bridge, the server and every client a separate Node process. Loss is
 * injected in the receive paths (testDropRate) since this kernel has no
 * sch_netem. Assertions are about content and counts, never timings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Lab, type LabHost, createLab, listNamespaces } from '../../../lib/mcdist/netlab.js';
import { totalDrops } from '../../../lib/mcdist/wire.js';
import { type ScenarioResult, Scenarios, expectedDigest } from '../../../lib/mcdist/scenario.js';
import { buildWorker } from './harness.js';

let lab: Lab;
let scenarios: Scenarios;
let cleanupBuild: (() => Promise<void>) | undefined;

beforeAll(async () => {
  const built = await buildWorker();
  cleanupBuild = built.cleanup;
  scenarios = new Scenarios(built.script);
  lab = await createLab({ hosts: 34 }); // a server, 32 clients, and one spare for a second server
}, 120_000);

afterAll(async () => {
  scenarios?.killAll();
  const prefix = lab?.prefix;
  await lab?.destroy();
  await cleanupBuild?.();
  if (prefix) expect(await listNamespaces(prefix)).toEqual([]);
});

function expectComplete(r: ScenarioResult, blocks: number, clients: number): void {
  expect(r.clients).toHaveLength(clients);
  for (const c of r.clients) {
    expect(c.wanted).toBe(blocks);
    expect(c.mismatches).toBe(0);
    expect(c.digest).toBe(r.expectedDigest);
    expect(c.stats.transport).toBe('multicast');
    expect(c.stats.blocksReceived).toBe(blocks);
    // Every block went through onBatch exactly once.
    expect(c.batchedBlocks).toBe(blocks);
  }
}

describe('mcdist over multicast between namespaces', () => {
  it('serves 32 clients every block, byte-exact, without loss injected', async () => {
    const r = await scenarios.run({ lab, clients: 32, blocks: 512 });
    expectComplete(r, 512, 32);
    // One reply serves every clone: the server sent each block about once, not 32 times.
    expect(r.server.blocksSent).toBeGreaterThanOrEqual(512);
    expect(r.server.blocksSent).toBeLessThan(512 * 2);
    expect(r.server.requestsReceived).toBeGreaterThan(r.server.blocksSent);
    const prefetched = r.clients.reduce((n, c) => n + c.stats.prefetched, 0);
    expect(prefetched).toBeGreaterThan((512 * 32) / 2);
    expect(totalDrops(r.server.drops)).toBe(0);
    for (const c of r.clients) expect(totalDrops(c.stats.drops)).toBe(0);
  });

  it('completes with 5% loss on every receive path', async () => {
    const r = await scenarios.run({ lab, clients: 8, blocks: 1024, testDropRate: 0.05 });
    expectComplete(r, 1024, 8);
    expect(r.server.drops.testDropped).toBeGreaterThan(0);
    for (const c of r.clients) expect(c.stats.drops.testDropped).toBeGreaterThan(0);
    // Losses were noticed and repaired.
    expect(r.server.resends).toBeGreaterThan(0);
    expect(r.server.losses).toBeGreaterThan(0);
  });

  it('completes with 5% loss and 32 clients', async () => {
    const r = await scenarios.run({ lab, clients: 32, blocks: 256, testDropRate: 0.05 });
    expectComplete(r, 256, 32);
    expect(r.server.losses).toBeGreaterThan(0);
  });

  it('completes with 30% loss on every receive path', async () => {
    const r = await scenarios.run({ lab, clients: 8, blocks: 384, testDropRate: 0.3 });
    expectComplete(r, 384, 8);
    expect(r.server.rateCuts).toBeGreaterThan(0);
    for (const c of r.clients) expect(c.stats.retransmits).toBeGreaterThan(0);
  });

  it('completes with 30% loss and 32 clients', async () => {
    const r = await scenarios.run({ lab, clients: 32, blocks: 128, testDropRate: 0.3 });
    expectComplete(r, 128, 32);
  });

  it('serves a client that starts after the others have finished', async () => {
    const r = await scenarios.run({ lab, clients: 6, blocks: 1024, lateClients: 1 });
    expectComplete(r, 1024, 7);
    const late = r.clients[6]!;
    // Everything it wanted had been multicast before it joined, so it had to ask for all of it.
    expect(late.stats.requestsSent).toBeGreaterThanOrEqual(1024);
    expect(r.server.stale).toBeGreaterThan(0);
  });

  it('keeps two sessions on one group and port apart', async () => {
    // Two fork families whose group and port collide; their servers on different hosts.
    const shared = { group: '239.192.77.77', groupPort: 45454 };
    const hostsA = lab.hosts.slice(1, 4);
    const hostsB = lab.hosts.slice(4, 7);
    const a = await scenarios.startServer({ lab, clients: 0, blocks: 256, seed: 101, serverHost: 0, ...shared });
    const b = await scenarios.startServer({ lab, clients: 0, blocks: 256, seed: 202, serverHost: 33, ...shared });
    const clientsA = scenarios.startClients({ lab, clients: 3, blocks: 256, seed: 101 }, a.session, hostsA, 1);
    const clientsB = scenarios.startClients({ lab, clients: 3, blocks: 256, seed: 202 }, b.session, hostsB, 1);
    const { results } = await scenarios.runClients([...clientsA, ...clientsB]);
    await Promise.all([a.server.stop(), b.server.stop()]);
    results.slice(0, 3).forEach((c) => expect(c.digest).toBe(expectedDigest(101, 256)));
    results.slice(3).forEach((c) => expect(c.digest).toBe(expectedDigest(202, 256)));
    for (const c of results) {
      expect(c.mismatches).toBe(0);
      expect(c.stats.blocksReceived).toBe(256);
      // Each client heard the other family's replies and threw them away.
      expect(c.stats.drops.wrongSession).toBeGreaterThan(0);
    }
  });

  it('probes multicast: available with a group route, unavailable without one', async () => {
    // As `snowflock doctor` calls it: no interface given, so the kernel's routes decide.
    const probe = async (host: LabHost): Promise<{ available: boolean; reason?: string }> => {
      const w = scenarios.spawn(host, ['probe']);
      return (await w.waitFor('probe')).result as { available: boolean; reason?: string };
    };
    expect(await probe(lab.hosts[1]!)).toEqual({ available: true });
    const bare = await createLab({ hosts: 1, multicastRoute: false, prefix: `${lab.prefix}x` });
    try {
      const r = await probe(bare.hosts[0]!);
      expect(r.available).toBe(false);
      expect(r.reason).toMatch(/cannot join .*ENODEV/);
    } finally {
      await bare.destroy();
    }
    expect(await listNamespaces(`${lab.prefix}x`)).toEqual([]);
  });
});
