// The guest library's client over a stub channel: which calls survive a dropped channel (and
// resend the very same request), which do not, and hierarchical workers.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ChannelUnavailableError, SfClient, type GuestChannel } from '../../../lib/api/index.js';
import { SfError } from '../../../lib/daemon/errors.js';

type Answer = (type: string, body: Record<string, unknown>) => Promise<unknown>;

/** Each connect gets the next answer function; requests are recorded. */
function stub(answers: Answer[]) {
  const sent: { conn: number; type: string; body: Record<string, unknown> }[] = [];
  let connects = 0;
  const connect = async (): Promise<GuestChannel> => {
    const conn = connects++;
    const answer = answers[Math.min(conn, answers.length - 1)]!;
    let closed = false;
    return {
      get closed() { return closed; },
      close: () => { closed = true; },
      request: (async (type: string, body: Record<string, unknown>) => {
        sent.push({ conn, type, body });
        return answer(type, body);
      }) as GuestChannel['request'],
    };
  };
  return { connect, sent, connects: () => connects };
}

const dropped = async () => { throw new SfError('channel-closed', 'connection closed'); };

describe('retries', () => {
  it('sf_clone resends the same request on a new channel after the fork broke the old one', async () => {
    const s = stub([dropped, async () => ({ vmid: 3, clones: 4, hierarchical: false, vcpus: 1 })]);
    const c = new SfClient(s.connect, { retryDelayMs: 1 });
    expect(await c.clone('t-1')).toBe(3);
    expect(s.connects()).toBe(2);
    // ... and then, in the child, asks its host daemon to put its vifs on the bridge.
    expect(s.sent.map((x) => x.type)).toEqual(['clone', 'clone', 'network_ready']);
    expect(s.sent[0]!.body).toEqual(s.sent[1]!.body); // same ticket, same requestId
    expect(s.sent[0]!.body.requestId).toMatch(/^[A-Za-z0-9_-]{16}$/);
  });

  it('only a child sends network_ready, after sf_clone answered, and a failed one fails sf_clone', async () => {
    const parent = stub([async () => ({ vmid: 0, clones: 2, hierarchical: false, vcpus: 1 })]);
    expect(await new SfClient(parent.connect).clone('t-1')).toBe(0);
    expect(parent.sent.map((x) => x.type)).toEqual(['clone']);
    const child = stub([async (type) => {
      if (type === 'network_ready') throw new SfError('internal', "host h1 cannot put domain 7's vifs on their bridges: no bridge");
      return { vmid: 1, clones: 2, hierarchical: false, vcpus: 1 };
    }]);
    await expect(new SfClient(child.connect, { retryDelayMs: 1 }).clone('t-1')).rejects.toThrow(/vifs on their bridges/);
    expect(child.sent.map((x) => x.type)).toEqual(['clone', 'network_ready']);
  });

  it('each sf_clone call has its own requestId', async () => {
    const s = stub([async () => ({ vmid: 0, clones: 1, hierarchical: false, vcpus: 1 })]);
    const c = new SfClient(s.connect);
    await c.clone('t-1');
    await c.clone({ ticket: 't-2' });
    expect(s.sent[0]!.body.requestId).not.toBe(s.sent[1]!.body.requestId);
    expect(s.sent[1]!.body.ticket).toBe('t-2');
  });

  it('sf_exit is resent after master-unavailable; refusals are not retried', async () => {
    let n = 0;
    const s = stub([async () => { if (n++ === 0) throw new SfError('master-unavailable', 'no master'); return { vmid: 2 }; }]);
    const c = new SfClient(s.connect, { retryDelayMs: 1 });
    await c.exit();
    expect(s.sent.map((x) => x.type)).toEqual(['exit', 'exit']);
    const r = stub([async () => { throw new SfError('not-child', 'only a clone may sf_exit'); }]);
    await expect(new SfClient(r.connect, { retryDelayMs: 1 }).exit()).rejects.toMatchObject({ code: 'not-child' });
    expect(r.sent).toHaveLength(1);
  });

  it('join, kill and request_ticket are sent once', async () => {
    for (const call of [(c: SfClient) => c.join('t-1'), (c: SfClient) => c.kill('t-1'), (c: SfClient) => c.requestTicket(2)]) {
      const s = stub([dropped]);
      await expect(call(new SfClient(s.connect, { retryDelayMs: 1 }))).rejects.toMatchObject({ code: 'channel-closed' });
      expect(s.sent).toHaveLength(1);
    }
  });

  it('a clone that wakes up after retryForMs has passed still gets a full retry window', async () => {
    let vm = 'parent';
    let tries = 0;
    const s = stub([
      async () => {
        // The fork outlasts the whole retry window, and the call wakes up in a clone.
        await new Promise((r) => setTimeout(r, 80));
        vm = 'clone';
        throw new SfError('channel-closed', 'this VM was cloned: the vchan belongs to its parent');
      },
      async (type) => {
        if (type === 'network_ready') return { released: [] };
        if (++tries < 3) throw new ChannelUnavailableError('the host daemon is not serving this domain yet');
        return { vmid: 2, clones: 2, hierarchical: false, vcpus: 1 };
      },
    ]);
    const c = new SfClient(s.connect, { retryForMs: 50, retryDelayMs: 1, identity: () => vm });
    expect(await c.clone('t-1')).toBe(2);
    expect(tries).toBe(3);
  });

  it('gives up after retryForMs with the last error', async () => {
    let tries = 0;
    const c = new SfClient(async () => { tries++; throw new ChannelUnavailableError('cannot reach the host daemon'); }, { retryForMs: 50, retryDelayMs: 5 });
    await expect(c.clone('t-1')).rejects.toMatchObject({ code: 'channel-closed', message: 'cannot reach the host daemon' });
    expect(tries).toBeGreaterThan(1);
  });
});

describe('hierarchical clones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-workers-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const worker = join(dir, 'worker.mjs');
  writeFileSync(worker, `import { writeFileSync } from 'node:fs';
writeFileSync(process.argv[2] + '/w' + process.env.SF_WORKER, 'vmid=' + process.env.SF_VMID + ' workers=' + process.env.SF_WORKERS);
`);

  it('a child starts vcpus - 1 workers, and sf_exit waits for them', async () => {
    const out = mkdtempSync(join(dir, 'a-'));
    let filesAtExit: string[] = [];
    const s = stub([async (type) => {
      if (type === 'clone') return { vmid: 2, clones: 2, hierarchical: true, vcpus: 3 };
      filesAtExit = readdirSync(out).sort();
      return { vmid: 2 };
    }]);
    const c = new SfClient(s.connect);
    expect(await c.clone('t-1', { workers: { module: worker, args: [out] } })).toBe(2);
    await c.exit();
    expect(filesAtExit).toEqual(['w1', 'w2']);
    expect(readFileSync(join(out, 'w1'), 'utf8')).toBe('vmid=2 workers=2');
    expect(readFileSync(join(out, 'w2'), 'utf8')).toBe('vmid=2 workers=2');
  });

  it('no workers in the parent, nor with a plain ticket', async () => {
    for (const answer of [{ vmid: 0, clones: 2, hierarchical: true, vcpus: 3 }, { vmid: 1, clones: 2, hierarchical: false, vcpus: 3 }]) {
      const out = mkdtempSync(join(dir, 'b-'));
      const s = stub([async (type) => (type === 'clone' ? answer : { vmid: 1 })]);
      const c = new SfClient(s.connect);
      await c.clone('t-1', { workers: { module: worker, args: [out] } });
      if (answer.vmid > 0) await c.exit();
      expect(readdirSync(out)).toEqual([]);
    }
  });
});
