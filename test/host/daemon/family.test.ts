// The sf_* API end to end: a master and two host daemons on real TCP, fake backends, the guest
// library over the TCP channel. A whole family, kill, every refusal on the list (each leaving no
// clone), host daemons restarted mid-fork and mid-work, and daemon authentication.
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  SfError, clone, configure, exit, join, kill, requestTicket, sf_clone, sf_exit, sf_join, sf_kill, sf_request_ticket,
  type GuestChannel,
} from '../../../lib/api/index.js';
import { connectTcp } from '../../../lib/api/tcp-channel.js';
import { clonesLeft, startLab, type Lab } from './harness.js';

let lab: Lab | null = null;
afterEach(async () => {
  await lab?.close();
  lab = null;
});

/** The parent VM (domid 7 on h1) through the module-level sf_* functions. */
function parentApi(l: Lab, channels?: GuestChannel[]) {
  configure(async () => {
    const ch = await connectTcp({ host: '127.0.0.1', port: l.hosts.h1.port, domid: 7 });
    channels?.push(ch);
    return ch;
  }, { retryForMs: 20_000, retryDelayMs: 50 });
}

/** Every child works until it is killed; resolves once n of them have started. */
function childrenWorkUntilKilled(l: Lab, n: number): Promise<void> {
  let started = 0;
  return new Promise<void>((working) => {
    l.childProgram = async () => {
      if (++started === n) working();
      await new Promise<void>(() => {});
    };
  });
}

describe('a family through the guest library', () => {
  it('ticket for 4 -> clone -> each child exits -> parent joins -> no clones left', async () => {
    lab = await startLab();
    parentApi(lab);
    const t = await sf_request_ticket(4);
    expect(t).toMatchObject({ requested: 4, granted: 4, hierarchical: false });
    expect(await sf_clone(t)).toBe(0);
    const kids = await lab.children();
    expect(kids.map((k) => k.vmid).sort()).toEqual([1, 2, 3, 4]);
    expect(new Set(kids.map((k) => k.host))).toEqual(new Set(['h1', 'h2']));
    const report = await sf_join(t);
    expect(report).toMatchObject({ outcome: 'joined', clones: 4, lost: [], unconfirmed: [] });
    expect(report.destroyed.sort()).toEqual([1, 2, 3, 4]);
    expect(clonesLeft(lab)).toBe(0);
    expect(lab.hosts.h1.fake.domains.get(7)!.state).toBe('running');
    expect((await lab.master.hosts()).hosts.map((h) => h.usedVcpus)).toEqual([0, 0]);
    // The fork is over: the parent's host let go of what its capture left (memserver, disk fronts).
    expect(lab.hosts.h1.fake.abandoned).toEqual([t.ticket]);
    expect(lab.hosts.h2.fake.abandoned).toEqual([]);
  });

  it('the camelCase names are the same calls; a child sees its role and leaves through the module-level exit()', async () => {
    expect([requestTicket, clone, exit, join, kill]).toEqual([sf_request_ticket, sf_clone, sf_exit, sf_join, sf_kill]);
    lab = await startLab();
    parentApi(lab);
    const roles: string[] = [];
    let parentCloned!: () => void;
    const cloned = new Promise<void>((r) => { parentCloned = r; });
    lab.childProgram = async (c) => {
      roles.push((await c.client.status()).role);
      if (c.vmid !== 1) return c.client.exit();
      // Clone 1 leaves as a guest program would: the default client on its own channel, then
      // exit(). Only once the parent's clone() has returned, since configure() replaces its client.
      await cloned;
      const l = lab!;
      configure(() => connectTcp({ host: '127.0.0.1', port: l.hosts[c.host].port, domid: c.domid }), { retryForMs: 20_000, retryDelayMs: 50 });
      await exit();
    };
    const t = await requestTicket(2);
    expect(await clone(t.ticket)).toBe(0);
    parentCloned();
    await lab.children();
    expect(roles).toEqual(['child', 'child']);
    parentApi(lab);
    const report = await join(t);
    expect(report).toMatchObject({ outcome: 'joined', lost: [], unconfirmed: [] });
    expect(report.destroyed.sort()).toEqual([1, 2]);
    expect(clonesLeft(lab)).toBe(0);
  });

  it('a child\'s vifs stay off the bridge until its sf_clone returns; a parent\'s network_ready releases nothing', async () => {
    lab = await startLab();
    parentApi(lab);
    const heldAtStart: boolean[] = [];
    const heldAfterClone: boolean[] = [];
    for (const { fake } of Object.values(lab.hosts)) {
      const runPrograms = fake.hooks.onStart!;
      fake.hooks.onStart = (clones) => {
        heldAtStart.push(...clones.map((d) => d.networkHeld === true));
        runPrograms(clones);
      };
    }
    lab.childProgram = async (c) => {
      heldAfterClone.push(lab!.hosts[c.host as 'h1' | 'h2'].fake.domains.get(c.domid)!.networkHeld === true);
      await c.client.exit();
    };
    const t = await sf_request_ticket(4);
    expect(await sf_clone(t)).toBe(0);
    await lab.children();
    expect(heldAtStart).toEqual([true, true, true, true]);
    expect(heldAfterClone).toEqual([false, false, false, false]);
    const ch = await connectTcp({ host: '127.0.0.1', port: lab.hosts.h1.port, domid: 7 });
    try {
      expect(await ch.request('network_ready', {})).toEqual({ released: [] });
    } finally {
      ch.close();
    }
    expect((await sf_join(t)).destroyed.sort()).toEqual([1, 2, 3, 4]);
  });

  it('kill during work destroys every clone at once', async () => {
    lab = await startLab();
    parentApi(lab);
    const allWorking = childrenWorkUntilKilled(lab, 4);
    const t = await sf_request_ticket(4);
    await sf_clone(t);
    await allWorking;
    expect(clonesLeft(lab)).toBe(4);
    const report = await kill(t);
    expect(report.outcome).toBe('killed');
    expect(report.destroyed.sort()).toEqual([1, 2, 3, 4]);
    expect(clonesLeft(lab)).toBe(0);
  });

  it('kill: clones that stop while being destroyed are not reported as died', async () => {
    lab = await startLab();
    parentApi(lab);
    const allWorking = childrenWorkUntilKilled(lab, 4);
    for (const h of [lab.hosts.h1, lab.hosts.h2]) {
      // As on Xen: the domain is seen shutting down while its destroy is still under way,
      // for longer than the host daemon's clone watch takes to look.
      h.fake.hooks.beforeDestroy = async (domid) => {
        h.fake.crash(domid);
        await new Promise((r) => setTimeout(r, 500));
      };
    }
    const t = await sf_request_ticket(4);
    await sf_clone(t);
    await allWorking;
    const report = await kill(t);
    expect(report.destroyed.sort()).toEqual([1, 2, 3, 4]);
    expect(report.died).toEqual([]);
    expect(clonesLeft(lab)).toBe(0);
  });

  it('a parent whose channel dies across the fork resends sf_clone and gets 0, with no second fork', async () => {
    lab = await startLab();
    const channels: GuestChannel[] = [];
    parentApi(lab, channels);
    const capture = lab.hosts.h1.fake.capture.bind(lab.hosts.h1.fake);
    lab.hosts.h1.fake.capture = async (p, f) => {
      channels.at(-1)!.close(); // the suspend broke the parent's channel
      return capture(p, f);
    };
    const t = await sf_request_ticket(3);
    expect(await sf_clone(t)).toBe(0);
    expect(channels.length).toBeGreaterThan(1);
    expect(clonesLeft(lab)).toBe(3);
    await lab.children();
    expect((await sf_join(t)).destroyed).toHaveLength(3);
  });
});

describe('bad requests get their error and leave no clone', () => {
  const refused = (code: string) => expect.objectContaining({ code, message: expect.any(String) });

  it('a ticket of another family', async () => {
    lab = await startLab();
    parentApi(lab);
    const other = lab.guest('h2', 9);
    const theirs = await other.requestTicket(2);
    await expect(sf_clone(theirs)).rejects.toEqual(refused('wrong-family'));
    await expect(sf_join(theirs)).rejects.toEqual(refused('wrong-family'));
    expect(clonesLeft(lab)).toBe(0);
  });

  it('join (and kill, and a new ticket) from a child', async () => {
    lab = await startLab();
    parentApi(lab);
    const errors: unknown[] = [];
    lab.childProgram = async (c) => {
      for (const attempt of [() => c.client.join(t), () => c.client.kill(t), () => c.client.requestTicket(1)]) {
        errors.push(await attempt().catch((e: unknown) => e));
      }
      await c.client.exit();
    };
    const t = await sf_request_ticket(1);
    await sf_clone(t);
    await lab.children();
    expect(errors).toEqual([refused('not-parent'), refused('not-parent'), refused('not-parent')]);
    expect((errors[0] as SfError).message).toMatch(/a clone may only sf_exit/);
    expect((await sf_join(t)).destroyed).toEqual([1]);
    expect(clonesLeft(lab)).toBe(0);
  });

  it('clone with an expired ticket', async () => {
    lab = await startLab({ ticketTtlMs: 100 });
    parentApi(lab);
    const t = await sf_request_ticket(2);
    await new Promise((r) => setTimeout(r, 300));
    await expect(sf_clone(t)).rejects.toEqual(refused('ticket-expired'));
    expect(clonesLeft(lab)).toBe(0);
    expect(lab.hosts.h1.fake.domains.get(7)!.state).toBe('running');
  });

  it.each([[0], [-1], [2.5]])('n = %s', async (n) => {
    lab = await startLab();
    parentApi(lab);
    await expect(sf_request_ticket(n)).rejects.toEqual(expect.objectContaining({ code: 'invalid-request', field: 'n' }));
    expect((await lab.master.hosts()).hosts.map((h) => h.usedVcpus)).toEqual([0, 0]);
    expect(clonesLeft(lab)).toBe(0);
  });

  it('a host daemon restarted mid-fork: clone fails naming the host, nothing is left, the parent runs', async () => {
    lab = await startLab();
    parentApi(lab);
    let building!: () => void;
    const inBuild = new Promise<void>((r) => { building = r; });
    let finishBuild!: () => void;
    const gate = new Promise<void>((r) => { finishBuild = r; });
    lab.hosts.h2.fake.hooks.beforeBuild = async () => { building(); await gate; };
    const t = await sf_request_ticket(4);
    const forking = sf_clone(t).then(() => null, (e: unknown) => e);
    await inBuild;
    await lab.restart('h2'); // the new daemon registers while the old one's build is still running
    expect(await forking).toEqual(expect.objectContaining({ code: 'clone-failed', message: expect.stringMatching(/on h2 failed/) }));
    finishBuild();
    await vi.waitFor(() => expect(clonesLeft(lab!)).toBe(0));
    expect(lab.hosts.h1.fake.domains.get(7)!.state).toBe('running');
    expect((await lab.master.hosts()).hosts.map((h) => h.usedVcpus)).toEqual([0, 0]);
    // the family can fork again
    lab.hosts.h2.fake.hooks.beforeBuild = undefined;
    const again = await sf_request_ticket(2);
    expect(await sf_clone(again)).toBe(0);
    await lab.children();
    expect((await sf_join(again)).destroyed.sort()).toEqual([1, 2]);
  });

  it('a host daemon restarted mid-work: join reports its clones lost instead of hanging; they are destroyed', async () => {
    lab = await startLab();
    parentApi(lab);
    let started = 0;
    let allStarted!: () => void;
    const running = new Promise<void>((r) => { allStarted = r; });
    lab.childProgram = async (c) => {
      if (++started === 4) allStarted();
      if (c.host === 'h1') await c.client.exit();
      else await new Promise<void>(() => {}); // h2's clones are still working when their daemon restarts
    };
    const t = await sf_request_ticket(4);
    await sf_clone(t);
    await running;
    const onH2 = lab.hosts.h2.fake.clones().map((d) => d.vmid);
    await lab.restart('h2');
    const report = await sf_join(t);
    expect(report.lost.map((x) => x.vmid).sort()).toEqual(onH2.sort());
    expect(report.lost.every((x) => x.host === 'h2')).toBe(true);
    expect(report.destroyed).toHaveLength(4 - onH2.length);
    expect(clonesLeft(lab)).toBe(0); // the restarted daemon destroyed them when it registered
    // Lost clones might still have been reading the parent's disks: its host kept the fork's fronts.
    expect(lab.hosts.h1.fake.abandoned).toEqual([]);
  });

  it('a clone that crashes before sf_exit: join reports it died instead of waiting; it is destroyed', async () => {
    lab = await startLab();
    parentApi(lab);
    let crashed = 0;
    lab.childProgram = async (c) => {
      if (c.vmid !== 2) return c.client.exit();
      crashed = c.domid;
      lab!.hosts[c.host].fake.crash(c.domid); // its host daemon notices within cloneWatchMs
    };
    const t = await sf_request_ticket(3);
    await sf_clone(t);
    await lab.children();
    const report = await sf_join(t);
    expect(report.died).toEqual([{ vmid: 2, host: expect.any(String), reason: 'crash' }]);
    expect(report.destroyed.sort()).toEqual([1, 2, 3]);
    expect(crashed).toBeGreaterThan(0);
    expect(clonesLeft(lab)).toBe(0);
  });
});

describe('daemon authentication', () => {
  it('a host daemon with the wrong key is refused; its guests are told the master is unavailable', async () => {
    lab = await startLab();
    const { HostDaemon } = await import('../../../lib/daemon/host-daemon.js');
    const { TcpGuestTransport } = await import('../../../lib/daemon/guest-transport.js');
    const { FakeBackend } = await import('../../../lib/daemon/fake-backend.js');
    const { randomBytes } = await import('node:crypto');
    const fake = new FakeBackend('intruder');
    fake.addParent(3);
    const events: string[] = [];
    const guests = new TcpGuestTransport({ identify: 'claimed' });
    const intruder = new HostDaemon({
      host: 'intruder', hostKey: randomBytes(32), master: { host: '127.0.0.1', port: lab.masterPort }, backend: fake, guests,
      capacity: { vcpus: 64, memoryMiB: 65536 }, reconnectMs: 50, log: (e, d) => events.push(`${e} ${String(d?.error ?? '')}`),
    });
    await intruder.start();
    try {
      await vi.waitFor(() => expect(events.some((e) => /master-connect-failed .*could not prove/.test(e))).toBe(true));
      expect(intruder.connected).toBe(false);
      expect(lab.master.connectedHosts().sort()).toEqual(['h1', 'h2']);
      const guest = await connectTcp({ host: '127.0.0.1', port: guests.port, domid: 3 });
      await expect(guest.request('request_ticket', { n: 1 })).rejects.toEqual(expect.objectContaining({ code: 'master-unavailable' }));
      guest.close();
    } finally {
      await intruder.close();
    }
  });

  it('a peer that talks to the master without the handshake is refused', async () => {
    lab = await startLab();
    const net = await import('node:net');
    const { FramedSocket } = await import('../../../lib/daemon/framed-socket.js');
    const s = net.connect(lab.masterPort, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    const conn = new FramedSocket(s, 'master');
    conn.send({ v: 1, id: 1, type: 'kill', domid: 7, ticket: 't-1' });
    expect(await conn.next(5000)).toMatchObject({ ok: true, value: { type: 'error', error: { code: 'not-authenticated' } } });
    await new Promise<void>((r) => conn.onClose(() => r()));
    expect(lab.master.connectedHosts().sort()).toEqual(['h1', 'h2']);
  });
});
