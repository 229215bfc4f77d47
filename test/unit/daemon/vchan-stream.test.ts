// The vchan stream adapter over an in-memory libxenvchan (tiny rings, so every message is split
// and every write waits for room): the framing and RPC on top work, and a close reaches the
// other side. Real libxenvchan is only exercised inside Xen.
import { describe, expect, it } from 'vitest';
import type { VchanHandle, VchanLib } from '../../../lib/api/vchan-lib.js';
import { VchanStream } from '../../../lib/api/vchan-stream.js';
import { MessageChannel } from '../../../lib/api/channel.js';
import { FramedSocket } from '../../../lib/daemon/framed-socket.js';
import { RpcPeer } from '../../../lib/daemon/rpc.js';
import { guestRequests } from '../../../lib/daemon/protocol.js';
import { VchanGuestTransport } from '../../../lib/daemon/vchan-transport.js';

type Side = 'client' | 'server';

/** Two ends of one vchan: a byte ring each way of `ring` bytes, an event flag per end. */
function fakeVchan(ring: number) {
  const inbox: Record<Side, number[]> = { client: [], server: [] };
  const live: Record<Side, boolean> = { client: true, server: true };
  const pending: Record<Side, boolean> = { client: false, server: false };
  const wake: Record<Side, (() => void) | null> = { client: null, server: null };
  const fds: Record<number, Side> = { 10: 'client', 20: 'server' };
  const closed: Side[] = [];
  const other = (s: Side): Side => (s === 'client' ? 'server' : 'client');
  const notify = (s: Side) => { pending[s] = true; wake[s]?.(); };
  const side = (h: VchanHandle) => (h as unknown as { side: Side }).side;
  const lib: VchanLib = {
    clientInit: () => null,
    serverInit: () => null,
    dataReady: (h) => inbox[side(h)].length,
    bufferSpace: (h) => ring - inbox[other(side(h))].length,
    read: (h, buf) => {
      const q = inbox[side(h)];
      const n = Math.min(buf.length, q.length);
      for (let i = 0; i < n; i++) buf[i] = q.shift()!;
      if (n > 0) notify(other(side(h))); // room for the writer
      return n;
    },
    write: (h, buf) => {
      if (!live[other(side(h))]) return -1;
      const q = inbox[other(side(h))];
      const n = Math.min(buf.length, ring - q.length);
      for (let i = 0; i < n; i++) q.push(buf[i]!);
      if (n > 0) notify(other(side(h)));
      return n;
    },
    wait: (h) => { pending[side(h)] = false; return 0; },
    fd: (h) => (side(h) === 'client' ? 10 : 20),
    isOpen: (h) => (live[other(side(h))] ? 1 : 0),
    close: (h) => { live[side(h)] = false; closed.push(side(h)); notify(other(side(h))); },
    pollReadable: (fd, timeoutMs) => new Promise((resolve) => {
      const s = fds[fd]!;
      if (pending[s]) return resolve(1);
      const t = setTimeout(() => { wake[s] = null; resolve(0); }, timeoutMs);
      wake[s] = () => { clearTimeout(t); wake[s] = null; resolve(1); };
    }),
  };
  const handle = (s: Side) => ({ side: s }) as unknown as VchanHandle;
  return { lib, client: handle('client'), server: handle('server'), closed };
}

describe('VchanStream', () => {
  it('carries framed requests and replies through a 97-byte ring', async () => {
    const v = fakeVchan(97);
    const server = new FramedSocket(new VchanStream(v.lib, v.server, true), 'vchan of domain 5');
    new RpcPeer(server, { requests: guestRequests, handle: async (type, body) => ({ type, echo: body, pad: 'x'.repeat(3000) }) });
    const channel = new MessageChannel(new FramedSocket(new VchanStream(v.lib, v.client, false), 'vchan to dom0'));
    const tickets = Array.from({ length: 12 }, (_, i) => `t-${String(i).padStart(16, '0')}`);
    const replies = await Promise.all(tickets.map((ticket) => channel.request('join', { ticket })));
    expect(replies.map((r) => (r as unknown as { echo: { ticket: string } }).echo.ticket)).toEqual(tickets);
    expect(replies.every((r) => (r as unknown as { pad: string }).pad.length === 3000)).toBe(true);
    channel.close();
    await new Promise<void>((r) => server.onClose(() => r()));
    expect(server.closed).toBe(true);
  });

  it('a peer that goes away ends the stream and fails what was waiting', async () => {
    const v = fakeVchan(64);
    const serverStream = new VchanStream(v.lib, v.server, true);
    const server = new FramedSocket(serverStream, 'vchan of domain 5');
    const received = new Promise<void>((r) => server.onMessage(() => r())); // reads the request, never answers
    const channel = new MessageChannel(new FramedSocket(new VchanStream(v.lib, v.client, false), 'vchan to dom0'));
    const waiting = channel.request('status', {});
    await received;
    const gone = new Promise((r) => serverStream.once('close', r));
    serverStream.destroy();
    await expect(waiting).rejects.toMatchObject({ code: 'channel-closed' });
    await gone;
    expect(v.closed).toContain('server');
  });

  it('in a clone, the parent\'s vchan is dropped without being touched or closed', async () => {
    const v = fakeVchan(64);
    const server = new FramedSocket(new VchanStream(v.lib, v.server, true), 'vchan of domain 5');
    const received = new Promise<void>((r) => server.onMessage(() => r())); // the fork happens while the request waits
    let forked = false;
    const touched: string[] = [];
    const spy: VchanLib = { ...v.lib,
      dataReady: (h) => { if (forked) touched.push('dataReady'); return v.lib.dataReady(h); },
      isOpen: (h) => { if (forked) touched.push('isOpen'); return v.lib.isOpen(h); } };
    const channel = new MessageChannel(new FramedSocket(new VchanStream(spy, v.client, false, () => !forked), 'vchan to dom0'));
    const waiting = channel.request('clone', { ticket: 't-0000000000000001', requestId: 'r1' });
    await received;
    forked = true;
    await expect(waiting).rejects.toMatchObject({ code: 'channel-closed' });
    expect(channel.closed).toBe(true);
    await new Promise((r) => setTimeout(r, 300)); // a poll round: still nothing touches the ring
    expect(touched).toEqual([]);
    expect(v.closed).not.toContain('client');
  });

  it('dom0 sets a guest\'s server up again when it could not at first, and logs that once', async () => {
    const v = fakeVchan(64);
    let tries = 0;
    const lib: VchanLib = { ...v.lib, serverInit: () => (++tries < 3 ? null : v.server) };
    const logged: string[] = [];
    const transport = new VchanGuestTransport({ lib, log: (event) => logged.push(event) });
    const connected = new Promise<number>((resolve) => void transport.listen((_conn, domid) => resolve(domid)));
    transport.admit(5);
    expect(await connected).toBe(5);
    expect(tries).toBe(3);
    expect(logged).toEqual(['vchan-serve-failed']);
    await transport.close();
  }, 10_000);
});

