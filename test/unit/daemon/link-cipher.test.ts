// The daemons' link after its handshake: every frame sealed per direction, in sequence, under keys
// bound to the host's name; and what that costs a small RPC's round trip (printed, not asserted).
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import { authenticateHost, authenticateToMaster } from '../../../lib/daemon/auth.js';
import { deriveHostKey } from '../../../lib/daemon/host-key.js';
import { HEADER_BYTES } from '../../../lib/daemon/frame.js';
import { LinkCipher, linkKeys } from '../../../lib/daemon/link-cipher.js';
import { request } from '../../../lib/daemon/protocol.js';
import { RpcPeer } from '../../../lib/daemon/rpc.js';
import { obj } from '../../../lib/daemon/schema.js';
import { socketPair } from './socket-pair.js';

const key = randomBytes(32);
const nh = 'a'.repeat(64);
const nm = 'b'.repeat(64);

function ends(host = 'h1', k = key): { host: LinkCipher; master: LinkCipher } {
  return { host: new LinkCipher(linkKeys('host', k, host, nh, nm)), master: new LinkCipher(linkKeys('master', k, host, nh, nm)) };
}

const body = (s: string) => Buffer.from(s, 'utf8');
/** A sealed frame as the receiver's decoder hands it over (without its length header). */
const wire = (c: LinkCipher, s: string) => c.seal(body(s)).subarray(HEADER_BYTES);

describe('link cipher', () => {
  it('opens what the other side sealed, in order, in both directions; the bytes are not the message', () => {
    const { host, master } = ends();
    const f = wire(host, '{"type":"register"}');
    expect(f.toString('latin1')).not.toContain('register');
    expect(master.open(f)).toEqual({ ok: true, body: body('{"type":"register"}') });
    expect(master.open(wire(host, 'two'))).toEqual({ ok: true, body: body('two') });
    expect(host.open(wire(master, 'back'))).toEqual({ ok: true, body: body('back') });
  });

  it('refuses a replayed, a reordered and a dropped frame', () => {
    const { host, master } = ends();
    const f0 = wire(host, 'zero');
    expect(master.open(f0).ok).toBe(true);
    expect(master.open(f0)).toMatchObject({ ok: false, reason: expect.stringMatching(/out of sequence \(got 0, expected 1\)/) });
    const f1 = wire(host, 'one');
    const f2 = wire(host, 'two');
    expect(master.open(f2)).toMatchObject({ ok: false, reason: expect.stringMatching(/out of sequence \(got 2, expected 1\)/) });
    expect(master.open(f1).ok).toBe(true);
  });

  it('refuses a frame with any byte altered, even with its seq rewritten to the expected one', () => {
    const { host } = ends();
    const frames = [wire(host, 'zero'), wire(host, 'one')];
    for (let i = 0; i < frames[0]!.length; i++) {
      const { master } = ends();
      const f = Buffer.from(frames[0]!);
      f[i] = f[i]! ^ 0x80;
      expect(master.open(f).ok).toBe(false);
    }
    const moved = Buffer.from(frames[1]!);
    moved.writeBigUInt64BE(0n, 0);
    expect(ends().master.open(moved)).toMatchObject({ ok: false, reason: expect.stringMatching(/failed authentication/) });
  });

  it('keys differ per direction, per host name, per session and per cluster key', () => {
    const { host } = ends('h1');
    const f = wire(host, 'hello');
    expect(host.open(Buffer.from(f)).ok).toBe(false); // a frame reflected back to its sender
    expect(ends('h2').master.open(Buffer.from(f)).ok).toBe(false);
    expect(ends('h1', randomBytes(32)).master.open(Buffer.from(f)).ok).toBe(false);
    expect(new LinkCipher(linkKeys('master', key, 'h1', nh, 'c'.repeat(64))).open(Buffer.from(f)).ok).toBe(false);
    expect(ends('h1').master.open(Buffer.from(f)).ok).toBe(true);
  });
});

describe('sealed link after the handshake', () => {
  it('a hello without the link field (a daemon from before sealing) is refused, naming the field', async () => {
    const p = await socketPair();
    const refused = authenticateHost(p.master, key);
    p.host.send(request(0, 'hello', { role: 'host', host: 'h1', nonce: nh }));
    await expect(refused).rejects.toMatchObject({ code: 'bad-request', field: 'link' });
    p.done();
  });

  it('a hello without identity (a daemon from before host keys) is refused, naming the field', async () => {
    const p = await socketPair();
    const refused = authenticateHost(p.master, key);
    p.host.send(request(0, 'hello', { role: 'host', host: 'h1', nonce: nh, link: 'aes-256-gcm-v1' }));
    await expect(refused).rejects.toMatchObject({ code: 'bad-request', field: 'identity', message: expect.stringMatching(/upgrade the host daemon/) });
    p.done();
  });

  it('keys are per connection: a frame recorded on one link of a host does not open on its next', async () => {
    const hostKey = deriveHostKey(key, 'h1');
    const ping = { ping: obj({}) };
    const first = await socketPair();
    await Promise.all([authenticateHost(first.master, key), authenticateToMaster(first.host, hostKey, 'h1')]);
    const wire = (first.host as unknown as { stream: net.Socket }).stream;
    const recorded: Buffer[] = [];
    const write = wire.write.bind(wire);
    wire.write = ((chunk: Buffer, ...rest: never[]) => { recorded.push(Buffer.from(chunk)); return write(chunk, ...rest); }) as typeof wire.write;
    new RpcPeer(first.master, { requests: ping, handle: async () => ({}) });
    await new RpcPeer(first.host, { requests: ping, handle: async () => ({}) }).call('ping', {}, 5000);
    first.done();
    expect(recorded).toHaveLength(1); // frame 0 of the host's direction: seq 0, as on any new link

    const second = await socketPair();
    await Promise.all([authenticateHost(second.master, key), authenticateToMaster(second.host, hostKey, 'h1')]);
    const seen: string[] = [];
    new RpcPeer(second.master, { requests: ping, handle: async (t) => { seen.push(t); return {}; } });
    const closed = new Promise<string>((r) => second.master.onClose(r));
    (second.host as unknown as { stream: net.Socket }).stream.write(recorded[0]!);
    expect(await closed).toMatch(/frame 0 failed authentication/);
    expect(seen).toEqual([]);
    second.done();
  });

  it('requests go both ways sealed; a plain frame after welcome ends the link unread', async () => {
    const p = await socketPair();
    await Promise.all([authenticateHost(p.master, key), authenticateToMaster(p.host, deriveHostKey(key, 'h1'), 'h1')]);
    const seen: string[] = [];
    const ping = { ping: obj({}) };
    const m = new RpcPeer(p.master, { requests: ping, handle: async (t) => { seen.push(`master:${t}`); return {}; } });
    const h = new RpcPeer(p.host, { requests: ping, handle: async (t) => { seen.push(`host:${t}`); return {}; } });
    await h.call('ping', {}, 5000);
    await m.call('ping', {}, 5000);
    expect(seen).toEqual(['master:ping', 'host:ping']);
    const closed = new Promise<string>((r) => p.master.onClose(r));
    // What a relay would write: a well-formed plain frame, straight onto the host's socket.
    (p.host as unknown as { stream: net.Socket }).stream.write(Buffer.concat([Buffer.from([0, 0, 0, 30]), Buffer.from('{"v":1,"id":5,"type":"ping"}  ')]));
    expect(await closed).toMatch(/out of sequence/);
    expect(seen).toEqual(['master:ping', 'host:ping']);
    p.done();
  });

  it('diagnostic: round trips of a small RPC, plain and sealed', async () => {
    const N = 2000;
    const time = async (sealed: boolean): Promise<number> => {
      const p = await socketPair();
      if (sealed) await Promise.all([authenticateHost(p.master, key), authenticateToMaster(p.host, deriveHostKey(key, 'h1'), 'h1')]);
      const ping = { ping: obj({}) };
      new RpcPeer(p.master, { requests: ping, handle: async () => ({ at: 1 }) });
      const h = new RpcPeer(p.host, { requests: ping, handle: async () => ({}) });
      for (let i = 0; i < 200; i++) await h.call('ping', {}, 5000); // warm up
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) await h.call('ping', {}, 5000);
      const ns = Number(process.hrtime.bigint() - t0);
      p.done();
      return ns / N / 1000;
    };
    const runs: Record<'plain' | 'sealed', number[]> = { plain: [], sealed: [] };
    for (let i = 0; i < 3; i++) {
      runs.plain.push(await time(false));
      runs.sealed.push(await time(true));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
    const [plain, sealed] = [median(runs.plain), median(runs.sealed)];
    // The CPU the sealing itself takes: one small reply sealed and opened, without the network.
    const { host, master } = ends();
    const reply = body('{"v":1,"id":1234,"type":"ok","result":{"at":1}}');
    const M = 20_000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < M; i++) master.open(host.seal(reply).subarray(HEADER_BYTES));
    const perFrame = Number(process.hrtime.bigint() - t0) / M / 1000;
    console.log(`daemon link, ${N} round trips of a small RPC over loopback TCP (median of 3): plain ${plain.toFixed(1)} µs, `
      + `sealed ${sealed.toFixed(1)} µs per round trip (${(sealed / plain).toFixed(2)}x); seal + open of one small frame ${perFrame.toFixed(1)} µs`);
    expect(sealed).toBeGreaterThan(0);
  });
});
