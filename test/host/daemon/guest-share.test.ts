// One guest cannot use up its host's link to the master: a parent that keeps sending join and
// reconnecting (leaving each join behind) does not make another guest's status answer busy,
// because a guest's forwarded requests end with its connection and each guest has its own bound.
import { afterEach, expect, it } from 'vitest';
import { connectTcp } from '../../../lib/api/tcp-channel.js';
import { SfError } from '../../../lib/daemon/errors.js';
import { startLab, type Lab } from './harness.js';

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.close();
  lab = null;
});

it('a guest looping join + reconnect cannot make another guest\'s status busy', async () => {
  lab = await startLab();
  lab.hosts.h1.fake.addParent(8);
  lab.childProgram = () => new Promise<void>(() => {}); // children work until killed: join waits
  const parent = lab.guest('h1', 7);
  const t = await parent.requestTicket(2);
  expect(await parent.clone(t)).toBe(0);

  const refusals: string[] = [];
  for (let i = 0; i < 100; i++) {
    const ch = await connectTcp({ host: '127.0.0.1', port: lab.hosts.h1.port, domid: 7 });
    for (let j = 0; j < 8; j++) {
      ch.request('join', { ticket: t.ticket }).catch((e: SfError) => { if (e.code === 'busy') refusals.push(e.message); });
    }
    await new Promise((r) => setTimeout(r, 10));
    ch.close();
  }
  const other = lab.guest('h1', 8);
  await expect(other.status()).resolves.toMatchObject({ role: 'none', domid: 8 });
  // and the looping guest itself is bounded, not the link: it may still ask for its status
  await expect(lab.guest('h1', 7).status()).resolves.toMatchObject({ role: 'parent' });
  const report = await parent.kill(t);
  expect(report.outcome).toBe('killed');
});
