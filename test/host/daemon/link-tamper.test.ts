// Every frame on the link between a host daemon and the master is authenticated, not only the
// key handshake: a relay on the path (here a TCP proxy that sees the frames) that injects a
// well-formed command, replays, reorders or alters a frame gets the link cut, and nothing it
// sent is acted on. Frames after the handshake are also unreadable to it.
import { afterEach, expect, it } from 'vitest';
import { encodeFrame } from '../../../lib/daemon/frame.js';
import { MAX_FRAME_BYTES, request } from '../../../lib/daemon/protocol.js';
import { startLab, type HostName, type Lab } from './harness.js';
import { Relay, type Tamper } from './relay.js';

interface Logged { who: string; event: string; detail?: Record<string, unknown> }

let lab: Lab | null = null;
let relays: Relay[] = [];
afterEach(async () => {
  await lab?.close();
  for (const r of relays) r.close();
  lab = null;
  relays = [];
});

/** A lab whose hosts reach the master through relays; the log of every daemon. */
async function relayedLab(hosts: HostName[]): Promise<{ relay: Partial<Record<HostName, Relay>>; log: Logged[] }> {
  const relay: Partial<Record<HostName, Relay>> = {};
  const log: Logged[] = [];
  const via = Object.fromEntries(hosts.map((h) => [h, async (masterPort: number) => {
    const r = new Relay(masterPort);
    relays.push(r);
    relay[h] = r;
    return r.listen();
  }]));
  lab = await startLab({ via, log: (who, event, detail) => log.push({ who, event, ...(detail ? { detail } : {}) }) });
  return { relay, log };
}

/** Whether the relayed link was cut within ms. */
async function cutWithin(r: Relay, ms: number): Promise<boolean> {
  return Promise.race([r.cut.then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), ms))]);
}

function reasons(log: Logged[], who: string, event: string): string[] {
  return log.filter((l) => l.who === who && l.event === event).map((l) => String(l.detail?.reason));
}

/** Tamper once with the next frame in one direction; pass the others. */
function once(dir: 'toMaster' | 'toHost', f: (frame: Buffer) => Buffer[]): Tamper {
  let done = false;
  return (frame, d) => {
    if (done || d !== dir) return [frame];
    done = true;
    return f(frame);
  };
}

it('a relay that injects a well-formed destroy after the handshake is cut off, and nothing is destroyed', async () => {
  const { relay, log } = await relayedLab(['h1', 'h2']);
  const parent = lab!.guest('h2', 9);
  const t = await parent.requestTicket(2); // one clone on each host
  lab!.childProgram = () => new Promise<void>(() => {}); // the clones work on
  expect(await parent.clone(t)).toBe(0);
  const name: HostName = lab!.hosts.h1.fake.clones().length > 0 ? 'h1' : 'h2';
  const fake = lab!.hosts[name].fake;
  const [clone] = fake.clones();
  const destroyed: number[] = [];
  fake.hooks.beforeDestroy = async (domid) => { destroyed.push(domid); };

  relay[name]!.inject('toHost', encodeFrame(request(4242, 'destroy', { domids: [clone!.domid] }), MAX_FRAME_BYTES));
  const cut = await cutWithin(relay[name]!, 3000);
  await new Promise((r) => setTimeout(r, 200));
  expect(destroyed).toEqual([]);
  expect(fake.clones().map((d) => d.domid)).toContain(clone!.domid);
  expect(cut).toBe(true);
  expect(reasons(log, name, 'master-lost').join()).toMatch(/out of sequence|failed authentication/);

  // What the relay passed after the handshake (hello, auth / challenge, welcome) was not readable.
  for (const dir of ['toMaster', 'toHost'] as const) {
    const after = relay[name]!.seen[dir].slice(2);
    expect(after.length).toBeGreaterThan(0);
    for (const f of after) expect(f.toString('latin1')).not.toMatch(/"v":1|"type"/);
  }
});

it('a relay that replays a frame is cut off', async () => {
  const { relay, log } = await relayedLab(['h2']);
  const parent = lab!.guest('h2', 9);
  relay.h2!.tamper = once('toMaster', (f) => [f, f]);
  parent.status().catch(() => {});
  expect(await cutWithin(relay.h2!, 3000)).toBe(true);
  expect(reasons(log, 'master', 'host-disconnected').join()).toMatch(/out of sequence/);
});

it('a relay that reorders two frames is cut off', async () => {
  const { relay, log } = await relayedLab(['h2']);
  let held: Buffer | null = null;
  let n = 0;
  relay.h2!.tamper = (f, dir) => {
    if (dir !== 'toMaster' || n >= 2) return [f];
    n++;
    if (n === 1) { held = f; return []; }
    return [f, held!];
  };
  lab!.guest('h2', 9).status().catch(() => {});
  lab!.guest('h2', 9).status().catch(() => {});
  expect(await cutWithin(relay.h2!, 3000)).toBe(true);
  expect(reasons(log, 'master', 'host-disconnected').join()).toMatch(/out of sequence/);
});

it('a relay that flips a byte is cut off', async () => {
  const { relay, log } = await relayedLab(['h2']);
  relay.h2!.tamper = once('toHost', (f) => {
    const i = Math.floor(f.length / 2) + 2;
    f[i] = f[i]! ^ 0x01;
    return [f];
  });
  lab!.guest('h2', 9).status().catch(() => {});
  expect(await cutWithin(relay.h2!, 3000)).toBe(true);
  expect(reasons(log, 'h2', 'master-lost').join()).toMatch(/failed authentication/);
});
