// The master's rules over in-process links and fake backends: a whole family, join and kill,
// every refusal (and that it leaves no clone), all-or-nothing forks, hosts that drop out.
import { describe, expect, it, vi } from 'vitest';
import { lab, SIZE, type Lab } from './helpers.js';

const req = (n: number, hierarchical?: boolean) => ({ n, ...SIZE, ...(hierarchical === undefined ? {} : { hierarchical }) });

async function forkFour(l: Lab) {
  const t = await l.master.requestTicket(l.parent, req(4));
  const r = await l.master.clone(l.parent, t.ticket, 'request-0001');
  return { t, r };
}

async function noTickets(l: Lab) {
  expect((await l.cluster.describe()).tickets).toEqual([]);
}

describe('a family', () => {
  it('ticket for 4 -> clone -> every child exits -> join -> nothing left', async () => {
    const l = await lab();
    const { t, r } = await forkFour(l);
    expect(t.granted).toBe(4);
    expect(new Set(t.hosts)).toEqual(new Set(['h1', 'h2']));
    expect(r).toEqual({ vmid: 0, clones: 4, hierarchical: false, vcpus: 1 });
    expect(l.fakes.h1.domains.get(7)!.state).toBe('running'); // the parent runs on
    const kids = l.children();
    expect(kids).toHaveLength(4);
    expect(kids.every((k) => l.fakes[k.host as 'h1'].domains.get(k.domid)!.state === 'running')).toBe(true);
    // each clone completes its sf_clone and learns its vmid
    const vmids = await Promise.all(kids.map(async (k) => (await l.master.clone(k, t.ticket, 'anything-1')).vmid));
    expect(vmids.sort()).toEqual([1, 2, 3, 4]);
    expect(l.master.status(kids[0]!)).toMatchObject({ role: 'child', family: 'h1:7', ticket: t.ticket });
    expect(l.master.status(l.parent)).toMatchObject({ role: 'parent', family: 'h1:7', vmid: 0 });
    for (const k of kids) await l.master.exit(k);
    const report = await l.master.join(l.parent, t.ticket);
    expect(report).toMatchObject({ ticket: t.ticket, outcome: 'joined', clones: 4, lost: [], unconfirmed: [] });
    expect(report.destroyed.sort()).toEqual([1, 2, 3, 4]);
    expect(l.children()).toEqual([]);
    await noTickets(l);
    expect(l.master.list(null).families).toEqual([]);
    expect(l.master.status(kids[0]!).role).toBe('none');
  });

  it('join waits until the last child exited', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    const kids = l.children();
    let joined = false;
    const join = l.master.join(l.parent, t.ticket).then((r) => { joined = true; return r; });
    for (const k of kids.slice(0, 3)) await l.master.exit(k);
    await new Promise((r) => setImmediate(r));
    expect(joined).toBe(false);
    expect(l.children()).toHaveLength(4);
    await l.master.exit(kids[3]!);
    expect((await join).destroyed).toHaveLength(4);
    expect(joined).toBe(true);
  });

  it('a child its host reports dead does not keep join waiting; the report names it', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    const kids = l.children();
    for (const k of kids.slice(1)) await l.master.exit(k);
    const dead = kids[0]!;
    expect(l.master.cloneEnded(dead.host, { domid: dead.domid, reason: 'crash' })).toEqual({});
    expect(l.master.cloneEnded(dead.host, { domid: 9999, reason: 'gone' })).toEqual({}); // not a child: ignored
    const report = await l.master.join(l.parent, t.ticket);
    expect(report.died).toEqual([{ vmid: dead.vmid, host: dead.host, reason: 'crash' }]);
    expect(report.destroyed.sort()).toEqual([1, 2, 3, 4]);
    expect(l.children()).toEqual([]);
    await expect(l.master.exit(dead)).rejects.toMatchObject({ code: 'not-child' });
  });

  it('kill during work destroys every child at once; their later sf_exit is refused', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    const kids = l.children();
    const report = await l.master.kill(l.parent, t.ticket);
    expect(report.outcome).toBe('killed');
    expect(report.destroyed.sort()).toEqual([1, 2, 3, 4]);
    expect(l.children()).toEqual([]);
    await noTickets(l);
    await expect(l.master.exit(kids[0]!)).rejects.toMatchObject({ code: 'not-child' });
  });

  it('a join waiting when kill comes gets the kill report', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    const join = l.master.join(l.parent, t.ticket);
    const kill = await l.master.kill(l.parent, t.ticket);
    expect(await join).toEqual(kill);
    expect(kill.outcome).toBe('killed');
  });

  it('kill returns after the per-host timeout and names the clones it could not confirm', async () => {
    const l = await lab({ destroyTimeoutMs: 100 });
    const { t } = await forkFour(l);
    l.fakes.h2.hooks.beforeDestroy = () => new Promise(() => {}); // h2 never confirms
    const r = await l.master.kill(l.parent, t.ticket);
    const onH2 = t.hosts.flatMap((h, i) => (h === 'h2' ? [i + 1] : []));
    expect(r.unconfirmed.map((u) => u.vmid).sort()).toEqual(onH2);
    expect(r.unconfirmed.every((u) => u.host === 'h2' && /within 100 ms/.test(u.reason))).toBe(true);
    expect(r.destroyed.sort()).toEqual([1, 2, 3, 4].filter((v) => !onH2.includes(v)));
    expect(l.fakes.h1.clones()).toEqual([]);
  });

  it('a ticket for fewer than n is still a ticket; m clones are made', async () => {
    const l = await lab();
    const t = await l.master.requestTicket(l.parent, req(20));
    expect(t.requested).toBe(20);
    expect(t.granted).toBe(8); // 4 vCPUs on each of two hosts
    await l.master.clone(l.parent, t.ticket, 'request-0001');
    expect(l.children()).toHaveLength(8);
  });
});

describe('refusals leave no clone behind', () => {
  it('another family\'s ticket', async () => {
    const l = await lab();
    const other = { host: 'h2', domid: 9 };
    const theirs = await l.master.requestTicket(other, req(2));
    await expect(l.master.clone(l.parent, theirs.ticket, 'request-0001')).rejects.toMatchObject({ code: 'wrong-family' });
    await expect(l.master.join(l.parent, theirs.ticket)).rejects.toMatchObject({ code: 'wrong-family' });
    await expect(l.master.kill(l.parent, theirs.ticket)).rejects.toMatchObject({ code: 'wrong-family' });
    expect(l.children()).toEqual([]);
    // the owner can still use it
    expect((await l.master.clone(other, theirs.ticket, 'request-0002')).vmid).toBe(0);
    expect(l.children()).toHaveLength(2);
  });

  it('only the parent may request, clone, join and kill; only a clone may exit', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    const child = l.children()[0]!;
    await expect(l.master.requestTicket(child, req(1))).rejects.toMatchObject({ code: 'not-parent' });
    await expect(l.master.join(child, t.ticket)).rejects.toMatchObject({ code: 'not-parent' });
    await expect(l.master.kill(child, t.ticket)).rejects.toMatchObject({ code: 'not-parent' });
    const spare = await l.master.requestTicket(l.parent, req(1));
    await expect(l.master.clone(child, spare.ticket, 'request-0003')).rejects.toMatchObject({ code: 'not-parent' });
    await expect(l.master.exit(l.parent)).rejects.toMatchObject({ code: 'not-child' });
    await expect(l.master.join({ host: 'h2', domid: 42 }, t.ticket)).rejects.toMatchObject({ code: 'wrong-family' });
    expect(l.children()).toHaveLength(4);
  });

  it('a ticket clones once; the same request resent gets the same answer', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    await expect(l.master.clone(l.parent, t.ticket, 'request-0002')).rejects.toMatchObject({ code: 'ticket-in-use' });
    expect(await l.master.clone(l.parent, t.ticket, 'request-0001')).toMatchObject({ vmid: 0, clones: 4 });
    expect(l.children()).toHaveLength(4);
  });

  it.each([[0], [-3], [2.5], [Number.NaN]])('n = %s is refused', async (n) => {
    const l = await lab();
    await expect(l.master.requestTicket(l.parent, req(n))).rejects.toMatchObject({ code: 'invalid-request', field: 'n' });
    await noTickets(l);
    expect(l.master.status(l.parent).role).toBe('none');
  });

  it('an expired ticket is refused', async () => {
    const l = await lab({ ticketTtlMs: 20 });
    const t = await l.master.requestTicket(l.parent, req(2));
    await new Promise((r) => setTimeout(r, 60));
    await expect(l.master.clone(l.parent, t.ticket, 'request-0001')).rejects.toMatchObject({ code: 'ticket-expired' });
    expect(l.children()).toEqual([]);
    expect(l.fakes.h1.domains.get(7)!.state).toBe('running');
  });

  it('join with an unused ticket, and a second join, say why', async () => {
    const l = await lab();
    const unused = await l.master.requestTicket(l.parent, req(1));
    await expect(l.master.join(l.parent, unused.ticket)).rejects.toMatchObject({ code: 'ticket-not-used' });
    const { t } = await forkFour(l);
    for (const k of l.children()) await l.master.exit(k);
    await l.master.join(l.parent, t.ticket);
    await expect(l.master.join(l.parent, t.ticket)).rejects.toMatchObject({ code: 'ticket-released' });
    await expect(l.master.kill(l.parent, 't-0000000000000000')).rejects.toMatchObject({ code: 'unknown-ticket' });
  });

  it('a fork is all or nothing: a failed build leaves no clone and the parent running', async () => {
    const l = await lab();
    l.fakes.h2.hooks.beforeBuild = async () => { throw new Error('out of memory on h2'); };
    const t = await l.master.requestTicket(l.parent, req(4));
    await expect(l.master.clone(l.parent, t.ticket, 'request-0001')).rejects.toMatchObject({
      code: 'clone-failed', message: expect.stringMatching(/on h2 failed: out of memory on h2/),
    });
    expect(l.children()).toEqual([]);
    expect(l.fakes.h1.domains.get(7)!.state).toBe('running');
    await noTickets(l);
    // the resent request gets the same error, not a new fork
    await expect(l.master.clone(l.parent, t.ticket, 'request-0001')).rejects.toMatchObject({ code: 'clone-failed' });
  });
});

describe('hosts that drop out', () => {
  it('children of a dropped host are lost: join reports them, the host destroys them when it returns', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    const onH2 = l.children().filter((k) => k.host === 'h2');
    l.drop('h2');
    for (const k of l.children().filter((c) => c.host === 'h1')) await l.master.exit(k);
    const r = await l.master.join(l.parent, t.ticket);
    expect(r.lost.map((x) => x.vmid).sort()).toEqual(onH2.map((k) => k.vmid).sort());
    expect(r.destroyed).toHaveLength(4 - onH2.length);
    expect(l.fakes.h1.clones()).toEqual([]);
    expect(l.fakes.h2.clones()).toHaveLength(onH2.length); // still there while h2's daemon is away
    const disowned = await l.reconnect('h2');
    expect(disowned.sort()).toEqual(onH2.map((k) => k.domid).sort());
    expect(l.fakes.h2.clones()).toEqual([]);
  });

  it('kill of a family with a dropped host returns at once and reports the lost ones', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    l.drop('h2');
    const r = await l.master.kill(l.parent, t.ticket);
    expect(r.lost.length + r.destroyed.length).toBe(4);
    expect(r.lost.every((x) => x.host === 'h2')).toBe(true);
  });

  it('a host dropping mid-build fails the fork; its late clones are destroyed, the parent runs', async () => {
    const l = await lab();
    let openGate!: () => void;
    const gate = new Promise<void>((r) => { openGate = r; });
    let building!: () => void;
    const started = new Promise<void>((r) => { building = r; });
    l.fakes.h2.hooks.beforeBuild = async () => { building(); await gate; };
    const t = await l.master.requestTicket(l.parent, req(4));
    const clone = l.master.clone(l.parent, t.ticket, 'request-0001');
    await started;
    l.drop('h2');
    await expect(clone).rejects.toMatchObject({ code: 'clone-failed', message: expect.stringMatching(/on h2 failed/) });
    expect(l.fakes.h1.clones()).toEqual([]);
    expect(l.fakes.h1.domains.get(7)!.state).toBe('running');
    openGate(); // h2's build ends after its link died: the old daemon destroys what it built
    await vi.waitFor(() => expect(l.fakes.h2.clones()).toEqual([]));
    await noTickets(l);
  });

  it('the parent\'s host dropping mid-capture fails the fork and releases the parent', async () => {
    const l = await lab();
    const t = await l.master.requestTicket(l.parent, req(2));
    const capture = l.fakes.h1.capture.bind(l.fakes.h1);
    l.fakes.h1.capture = async (p, f) => {
      const image = await capture(p, f); // the parent is stopped now...
      l.drop('h1'); // ...and its daemon's link dies before the master hears back
      return image;
    };
    await expect(l.master.clone(l.parent, t.ticket, 'request-0001')).rejects.toMatchObject({ code: 'clone-failed' });
    await vi.waitFor(() => expect(l.fakes.h1.domains.get(7)!.state).toBe('running'));
    expect(l.children()).toEqual([]);
  });
});

describe('views', () => {
  it('a guest lists its own family only; a daemon lists all', async () => {
    const l = await lab();
    const { t } = await forkFour(l);
    await l.master.requestTicket({ host: 'h2', domid: 9 }, req(1));
    const mine = l.master.list(l.parent).families;
    expect(mine.map((f) => f.family)).toEqual(['h1:7']);
    expect(mine[0]!.children).toHaveLength(4);
    expect(mine[0]!.tickets).toEqual([{ ticket: t.ticket, granted: 4, state: 'running' }]);
    expect(l.master.list(l.children()[0]!).families.map((f) => f.family)).toEqual(['h1:7']);
    expect(l.master.list({ host: 'h2', domid: 55 }).families).toEqual([]);
    expect(l.master.list(null).families.map((f) => f.family).sort()).toEqual(['h1:7', 'h2:9']);
    const hosts = (await l.master.hosts()).hosts;
    expect(hosts.map((h) => [h.name, h.connected, h.usedVcpus])).toEqual([['h1', true, 3], ['h2', true, 2]]);
  });
});
