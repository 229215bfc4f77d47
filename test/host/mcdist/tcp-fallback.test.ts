/**
 * The TCP fallback on the same kind of lab: forced on both ends, and followed
 * by clients left on 'auto' when the server chose it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Lab, createLab, listNamespaces } from '../../../lib/mcdist/netlab.js';
import { Scenarios } from '../../../lib/mcdist/scenario.js';
import { buildWorker } from './harness.js';

let lab: Lab;
let scenarios: Scenarios;
let cleanupBuild: (() => Promise<void>) | undefined;

beforeAll(async () => {
  const built = await buildWorker();
  cleanupBuild = built.cleanup;
  scenarios = new Scenarios(built.script);
  lab = await createLab({ hosts: 33 });
}, 120_000);

afterAll(async () => {
  scenarios?.killAll();
  const prefix = lab?.prefix;
  await lab?.destroy();
  await cleanupBuild?.();
  if (prefix) expect(await listNamespaces(prefix)).toEqual([]);
});

describe('mcdist TCP fallback between namespaces', () => {
  it('serves 32 clients every block, byte-exact, over unicast TCP', async () => {
    const r = await scenarios.run({ lab, clients: 32, blocks: 512, transport: 'tcp' });
    expect(r.server.transport).toBe('tcp');
    for (const c of r.clients) {
      expect(c.stats.transport).toBe('tcp');
      expect(c.mismatches).toBe(0);
      expect(c.digest).toBe(r.expectedDigest);
      expect(c.stats.blocksReceived).toBe(512);
      expect(c.batchedBlocks).toBe(512);
    }
    // Unicast: every client's every block is its own send.
    expect(r.server.blocksSent).toBe(32 * 512);
    expect(r.server.requestsReceived).toBe(32 * 512);
  });

  it('clients on auto follow a server that chose TCP', async () => {
    const r = await scenarios.run({ lab, clients: 4, blocks: 512, transport: 'tcp', clientTransport: 'auto' });
    expect(JSON.parse(r.session).transport).toBe('tcp');
    for (const c of r.clients) {
      expect(c.stats.transport).toBe('tcp');
      expect(c.mismatches).toBe(0);
      expect(c.digest).toBe(r.expectedDigest);
    }
    expect(r.server.blocksSent).toBe(4 * 512);
  });
});
