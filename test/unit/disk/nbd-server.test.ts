// The read-only NBD server (lib/disk/nbd-server.ts) against our NBD client and a raw socket:
// reads byte-exact, options QEMU sends that it refuses (structured replies), and peers that
// break the protocol refused by name with only their own connection dropped.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient } from '../../../lib/disk/nbd-client.js';
import { NbdReadOnlyServer } from '../../../lib/disk/nbd-server.js';
import { CMD, OPT, RawNbd } from '../../host/disk/raw-nbd.js';

const SIZE = 1 << 20;
const data = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);

describe('read-only NBD server', () => {
  let dir: string;
  let server: NbdReadOnlyServer;
  let failNext = false;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sfnbd-'));
    server = await NbdReadOnlyServer.listen(join(dir, 'nbd.sock'), {
      name: 'xvda', size: SIZE, preferredBlockSize: 32768,
      read: async (offset, length) => {
        if (failNext) {
          failNext = false;
          throw new Error('block not received');
        }
        return data.subarray(offset, offset + length);
      },
    });
  });

  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates with NBD_OPT_GO and serves pipelined reads byte-exact', async () => {
    const c = await NbdClient.connect({ path: server.path }, 'xvda');
    expect(c.size).toBe(SIZE);
    expect(c.flags & 2).toBe(2); // NBD_FLAG_READ_ONLY
    const reads = [[0, 4096], [12345, 70000], [SIZE - 1, 1], [0, SIZE]] as const;
    const got = await Promise.all(reads.map(([o, l]) => c.read(o, l)));
    reads.forEach(([o, l], i) => expect(got[i]!.equals(data.subarray(o, o + l))).toBe(true));
    c.close();
  });

  it('refuses an unknown export name and structured replies, then goes on (as QEMU falls back)', async () => {
    await expect(NbdClient.connect({ path: server.path }, 'nope')).rejects.toThrow(/refused \(NBD_REP error 6\): export "nope" not available/);
    const raw = await RawNbd.connect({ path: server.path });
    // RawNbd asks for structured replies first: refused with NBD_REP_ERR_UNSUP
    await expect(raw.handshake('xvda')).rejects.toThrow(/option 8 refused \(1\): option 8 not supported/);
    raw.close();
  });

  it('answers a read whose bytes cannot be had with EIO and keeps the connection', async () => {
    const c = await NbdClient.connect({ path: server.path }, 'xvda');
    failNext = true;
    await expect(c.read(0, 512)).rejects.toThrow(/error 5/);
    expect((await c.read(512, 512)).equals(data.subarray(512, 1024))).toBe(true);
    c.close();
  });

  /** A raw connection in transmission (GO without structured replies). */
  async function transmission(): Promise<RawNbd> {
    const raw = await RawNbd.connect({ path: server.path });
    await raw.greeting();
    raw.send(Buffer.from([0, 0, 0, 3]));
    const name = Buffer.from('xvda');
    const body = Buffer.concat([Buffer.from([0, 0, 0, name.length]), name, Buffer.from([0, 0])]);
    raw.rawOption(OPT.go, body.length, body);
    for (let acked = false; !acked;) {
      const h = await raw.read(20);
      const len = h!.readUInt32BE(16);
      if (len) await raw.read(len);
      acked = h!.readUInt32BE(12) === 1;
    }
    return raw;
  }

  it.each([
    ['a read past the end', { type: CMD.read, offset: BigInt(SIZE - 10), length: 11 }, 22, /read of 11 bytes at 1048566 is past the end of export xvda \(1048576 bytes\)/],
    ['a 4 GiB read', { type: CMD.read, offset: 0n, length: 0xffffffff }, 22, /read of 4294967295 bytes \(1\.\.33554432\)/],
    ['a write', { type: CMD.write, offset: 0n, length: 4, payload: Buffer.alloc(4) }, 1, /write on a read-only export/],
    ['an unknown command', { type: 99, offset: 0n, length: 1 }, 22, /unknown command 99/],
  ])('refuses %s by name, answers its handle and drops only that connection', async (_what, req, errno, why) => {
    const bystander = await NbdClient.connect({ path: server.path }, 'xvda');
    const raw = await transmission();
    raw.request({ ...req, handle: 77n });
    const reply = await raw.reply();
    expect(reply).toMatchObject({ handle: 77n, error: errno });
    expect(await raw.closesWithin(3000)).toBe(true);
    expect(server.refusals.at(-1)).toMatch(why);
    expect((await bystander.read(4096, 4096)).equals(data.subarray(4096, 8192))).toBe(true);
    bystander.close();
  });

  it('drops a peer that sends garbage, a bad request magic or an oversized option', async () => {
    const before = server.stats().refused;
    const garbage = await RawNbd.connect({ path: server.path });
    await garbage.greeting();
    garbage.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    expect(await garbage.closesWithin(3000)).toBe(true);
    expect(server.refusals.at(-1)).toMatch(/client flags 0x47455420: not fixed newstyle|unknown client flags/);

    const big = await RawNbd.connect({ path: server.path });
    await big.greeting();
    big.send(Buffer.from([0, 0, 0, 3]));
    big.rawOption(OPT.go, 0xffffffff);
    expect(await big.closesWithin(3000)).toBe(true);
    expect(server.refusals.at(-1)).toMatch(/option 7 claims 4294967295 bytes/);

    const magic = await transmission();
    magic.request({ type: CMD.read, offset: 0n, length: 512, magic: 0xdeadbeef });
    expect(await magic.closesWithin(3000)).toBe(true);
    expect(server.refusals.at(-1)).toMatch(/bad request magic 0xdeadbeef/);
    expect(server.stats().refused).toBe(before + 3);
    // the server still serves
    const c = await NbdClient.connect({ path: server.path }, 'xvda');
    expect((await c.read(0, 16)).equals(data.subarray(0, 16))).toBe(true);
    c.close();
  });
});
