// Random and mutated frames at a live host daemon (guest port) and master (daemon port): every
// connection gets only well-formed replies (or is closed), the daemons never crash or hang, and
// they serve good peers afterwards.
import { prng } from '../prng.js';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { InternalClusterManager } from '../../../lib/cluster/index.js';
import { FakeBackend } from '../../../lib/daemon/fake-backend.js';
import { FrameDecoder, encodeFrame } from '../../../lib/daemon/frame.js';
import { TcpGuestTransport } from '../../../lib/daemon/guest-transport.js';
import { HostDaemon } from '../../../lib/daemon/host-daemon.js';
import { deriveHostKey } from '../../../lib/daemon/host-key.js';
import { Master } from '../../../lib/daemon/master.js';
import { MasterServer } from '../../../lib/daemon/master-server.js';
import { MAX_FRAME_BYTES, parseEnvelope, request } from '../../../lib/daemon/protocol.js';
import { connectTcp } from '../../../lib/api/tcp-channel.js';

const key = randomBytes(32);
const master = new Master({ cluster: new InternalClusterManager({ ticketTtlMs: 1000 }) });
const server = new MasterServer({ master, key });
const fake = new FakeBackend('h1');
fake.addParent(7);
const guests = new TcpGuestTransport({ identify: 'claimed' });
let masterPort = 0;
let daemon: HostDaemon;

beforeAll(async () => {
  masterPort = (await server.listen()).port;
  daemon = new HostDaemon({ host: 'h1', hostKey: deriveHostKey(key, 'h1'), master: { host: '127.0.0.1', port: masterPort }, backend: fake, guests, capacity: { vcpus: 2, memoryMiB: 4096 } });
  await daemon.start();
  await daemon.whenRegistered();
});

afterAll(async () => {
  await daemon.close();
  await server.close();
});

const rnd = prng(20260611);
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const frame = (m: object) => encodeFrame(m, MAX_FRAME_BYTES);

function anyValue(depth = 0): unknown {
  const r = int(9);
  if (depth > 2 || r < 3) return pick([0, -1, 1.5, 7, 2 ** 53, 'x', '', 't-0123456789abcdef', true, null]);
  if (r < 5) return Array.from({ length: int(4) }, () => anyValue(depth + 1));
  return Object.fromEntries(Array.from({ length: int(4) }, () => [pick(['n', 'ticket', 'requestId', 'domid', 'v', 'id', 'type', '__proto__', 'z']), anyValue(depth + 1)]));
}

const GUEST_TYPES = ['request_ticket', 'clone', 'exit', 'join', 'kill', 'status', 'hosts', 'list', 'register', 'destroy', 'ok', 'error', 'identify', 'hello'];

function message(): object {
  const body = (anyValue(1) ?? {}) as object;
  return { ...(typeof body === 'object' && !Array.isArray(body) ? body : {}), v: pick([1, 1, 1, 2, '1', undefined]), id: pick([1, 2, 0, -5, 3.5, 'a', 2 ** 31]), type: pick(GUEST_TYPES) };
}

function mutate(f: Buffer): Buffer {
  const b = Buffer.from(f);
  switch (int(6)) {
    case 0: for (let i = 0, n = 1 + int(4); i < n; i++) b[int(b.length)] = int(256); return b;
    case 1: return b.subarray(0, int(b.length));
    case 2: b.writeUInt32BE(pick([0, 1, b.length, 0xffffffff, MAX_FRAME_BYTES + 1, int(2 ** 32)]), 0); return b;
    case 3: return Buffer.concat([b, Buffer.alloc(1 + int(16), int(256))]);
    case 4: return Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256)));
    default: return b;
  }
}

/**
 * Sends the bytes in random pieces, then a valid status request (id 424242), then half-closes,
 * and collects what comes back until the daemon hangs up: it must answer what it could read and
 * then close. A daemon that does neither fails the test.
 */
function connection(port: number, bytes: Buffer, probe: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      for (let at = 0; at < bytes.length;) {
        const end = Math.min(bytes.length, at + 1 + int(bytes.length));
        s.write(bytes.subarray(at, end));
        at = end;
      }
      s.end(probe);
    });
    const timer = setTimeout(() => { s.destroy(); reject(new Error('the daemon did not hang up')); }, 10_000);
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(got)); });
  });
}

/** Everything the daemon sent is a sequence of valid reply/error envelopes. */
function checkReplies(bytes: Buffer): void {
  const d = new FrameDecoder(MAX_FRAME_BYTES);
  const r = d.push(bytes);
  expect(r.fatal).toBeNull();
  for (const f of r.frames) {
    expect(f.ok).toBe(true);
    const p = parseEnvelope(f.ok ? f.value : null);
    expect(p.ok).toBe(true);
    if (p.ok) expect(['reply', 'error', 'request']).toContain(p.message.kind);
  }
}

it('the host daemon survives 1,600 random and mutated guest frames and still serves a guest', async () => {
  const probe = frame(request(424242, 'status', {}));
  let answered = 0;
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 20 }, async () => {
      const frames = Array.from({ length: 4 }, () => (rnd() < 0.6 ? frame(message()) : mutate(frame(message()))));
      const identify = rnd() < 0.8 ? frame(request(0, 'identify', { domid: pick([7, 8, 0, 0x7fef]) })) : mutate(frame(message()));
      const got = await connection(guests.port, Buffer.concat([identify, ...frames]), probe);
      checkReplies(got);
      if (got.includes('"id":424242,"type":"ok"')) answered++;
    }));
  }
  expect(answered).toBeGreaterThan(40); // the daemon kept serving connections that survived the fuzz
  const good = await connectTcp({ host: '127.0.0.1', port: guests.port, domid: 7 });
  expect(await good.request('status', {})).toMatchObject({ host: 'h1', domid: 7 });
  good.close();
  expect(daemon.connected).toBe(true);
});

it('the master survives 800 random frames from unauthenticated peers and keeps its host', async () => {
  const probe = frame(request(424242, 'status', { domid: 7 }));
  for (let batch = 0; batch < 10; batch++) {
    await Promise.all(Array.from({ length: 20 }, async () => {
      const hello = rnd() < 0.5 ? frame(request(0, 'hello', { role: 'host', host: 'h1', nonce: 'ab'.repeat(32) })) : mutate(frame(message()));
      const frames = Array.from({ length: 3 }, () => (rnd() < 0.5 ? frame(message()) : mutate(frame(message()))));
      const got = await connection(masterPort, Buffer.concat([hello, ...frames]), probe);
      checkReplies(got);
      expect(got.includes('"type":"ok"')).toBe(false); // nothing was answered without the key
    }));
  }
  expect(master.connectedHosts()).toEqual(['h1']);
  const good = await connectTcp({ host: '127.0.0.1', port: guests.port, domid: 7 });
  expect(await good.request('hosts', {})).toMatchObject({ hosts: [{ name: 'h1', connected: true }] });
  good.close();
});
