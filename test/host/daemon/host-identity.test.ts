// Each host daemon proves a key of its own (host-key.ts), and its name is its key's: a daemon
// holding host h2's key cannot register as h1 even while h1 is away, and a fork's secrets are
// sealed to the key of each host that takes part, re-sealed by the master on the way.
import { afterEach, expect, it, vi } from 'vitest';
import { FakeBackend } from '../../../lib/daemon/fake-backend.js';
import { TcpGuestTransport } from '../../../lib/daemon/guest-transport.js';
import { HostDaemon } from '../../../lib/daemon/host-daemon.js';
import { deriveHostKey } from '../../../lib/daemon/host-key.js';
import { seal, unseal } from '../../../lib/daemon/seal.js';
import { startLab, type HostName, type Lab } from './harness.js';

let lab: Lab | null = null;
const extra: HostDaemon[] = [];
afterEach(async () => {
  for (const d of extra.splice(0)) await d.close();
  await lab?.close();
  lab = null;
});

function daemon(name: string, keyOf: string, log?: (event: string, detail?: Record<string, unknown>) => void): HostDaemon {
  const d = new HostDaemon({
    host: name, hostKey: deriveHostKey(lab!.key, keyOf), master: { host: '127.0.0.1', port: lab!.masterPort },
    backend: new FakeBackend(name, 700), guests: new TcpGuestTransport({ port: 0, identify: 'claimed' }),
    capacity: { vcpus: 1, memoryMiB: 1024 }, reconnectMs: 50, ...(log ? { log } : {}),
  });
  extra.push(d);
  return d;
}

it('a daemon holding h2\'s key that says it is h1 is refused, though h1 is not connected; h1\'s own key gets in', async () => {
  const masterLog: string[] = [];
  lab = await startLab({ log: (who, event, detail) => { if (who === 'master') masterLog.push(`${event} ${String(detail?.error ?? '')}`); } });
  await lab.hosts.h1.daemon.close();
  await vi.waitFor(() => expect(lab!.master.connectedHosts()).toEqual(['h2']));

  const refusals: string[] = [];
  const impostor = daemon('h1', 'h2', (event, detail) => { if (event === 'master-connect-failed') refusals.push(String(detail?.error)); });
  await impostor.start();
  await vi.waitFor(() => expect(refusals.length).toBeGreaterThan(1));
  expect(impostor.connected).toBe(false);
  expect(refusals[0]).toMatch(/could not prove it holds host h1's key/);
  expect(masterLog.some((l) => /^auth-refused /.test(l))).toBe(true);
  expect(lab.master.connectedHosts()).toEqual(['h2']);
  await impostor.close();

  const real = daemon('h1', 'h1');
  await real.start();
  await real.whenRegistered();
  expect(lab.master.connectedHosts().sort()).toEqual(['h1', 'h2']);
});

it('a fork\'s sealed secret opens on each clone\'s host under its own key, and under no other host\'s', async () => {
  lab = await startLab();
  const secret = Buffer.alloc(32, 0x5a);
  const key = (h: HostName) => deriveHostKey(lab!.key, h);
  const parentHost = lab.hosts.h2.fake;
  const capture = parentHost.capture.bind(parentHost);
  parentHost.capture = async (parent, fork) => ({ ...(await capture(parent, fork)), sealedToken: seal(key('h2'), secret, fork.fork) });
  const opened: string[] = [];
  for (const h of ['h1', 'h2'] as const) {
    const fake = lab.hosts[h].fake;
    const build = fake.build.bind(fake);
    fake.build = async (image, fork, vmids) => {
      const sealed = image.sealedToken as string;
      expect(unseal(key(h), sealed, fork.fork)).toEqual(secret);
      expect(() => unseal(key(h === 'h1' ? 'h2' : 'h1'), sealed, fork.fork)).toThrow(/does not open/);
      expect(() => unseal(lab!.key, sealed, fork.fork)).toThrow(/does not open/);
      opened.push(h);
      return build(image, fork, vmids);
    };
  }
  const parent = lab.guest('h2', 9);
  const t = await parent.requestTicket(2); // one clone on each host
  expect(await parent.clone(t)).toBe(0);
  expect(opened.sort()).toEqual(['h1', 'h2']);
  await lab.children();
  await parent.join(t);
});
