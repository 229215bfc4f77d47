// A host's name belongs to the link that registered it: a second daemon that registers under the
// name of a connected host is refused, even holding that host's own key (a copied key file, a
// daemon started twice), and the real host keeps its link (its clones are not lost).
import { afterEach, expect, it } from 'vitest';
import { FakeBackend } from '../../../lib/daemon/fake-backend.js';
import { TcpGuestTransport } from '../../../lib/daemon/guest-transport.js';
import { HostDaemon } from '../../../lib/daemon/host-daemon.js';
import { deriveHostKey } from '../../../lib/daemon/host-key.js';
import { startLab, type Lab } from './harness.js';

let lab: Lab | null = null;
let impostor: HostDaemon | null = null;
afterEach(async () => {
  await impostor?.close();
  await lab?.close();
  lab = impostor = null;
});

it('a host that claims a connected host\'s name is refused', async () => {
  lab = await startLab();
  const parent = lab.guest('h2', 9);
  const t = await parent.requestTicket(1);
  lab.childProgram = () => new Promise<void>(() => {}); // the clone works on
  expect(await parent.clone(t)).toBe(0);
  const refusals: string[] = [];
  impostor = new HostDaemon({
    host: 'h2', hostKey: deriveHostKey(lab.key, 'h2'), master: { host: '127.0.0.1', port: lab.masterPort }, backend: new FakeBackend('h2', 500),
    guests: new TcpGuestTransport({ port: 0, identify: 'claimed' }), capacity: { vcpus: 1, memoryMiB: 1024 }, reconnectMs: 50,
    log: (event, detail) => { if (event === 'master-connect-failed') refusals.push(String(detail?.error)); },
  });
  await impostor.start();
  await new Promise((r) => setTimeout(r, 1000));
  expect(impostor.connected).toBe(false);
  expect(refusals[0]).toMatch(/h2 is already connected/);
  expect(lab.hosts.h2.daemon.connected).toBe(true);
  expect(await parent.status()).toMatchObject({ role: 'parent' });
  const report = await parent.kill(t);
  expect(report).toMatchObject({ outcome: 'killed', lost: [] });
});
