// A peer that has not proved the cluster key gets no more room at the master than the key
// handshake needs: a first frame announced larger than any handshake message is refused from
// its header alone.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { InternalClusterManager } from '../../../lib/cluster/index.js';
import { FrameDecoder } from '../../../lib/daemon/frame.js';
import { Master } from '../../../lib/daemon/master.js';
import { MasterServer } from '../../../lib/daemon/master-server.js';
import { MAX_FRAME_BYTES } from '../../../lib/daemon/protocol.js';

const server = new MasterServer({ master: new Master({ cluster: new InternalClusterManager({}) }), key: randomBytes(32) });
let port = 0;
beforeAll(async () => { port = (await server.listen()).port; });
afterAll(() => server.close());

/** Sends bytes; resolves with the decoded replies once the master hangs up (or after 3 s). */
function exchange(bytes: Buffer): Promise<{ closed: boolean; replies: unknown[] }> {
  return new Promise((resolve) => {
    const d = new FrameDecoder(MAX_FRAME_BYTES);
    const replies: unknown[] = [];
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    s.on('data', (c) => replies.push(...d.push(c).frames.map((f) => (f.ok ? f.value : f.reason))));
    s.on('error', () => {});
    const timer = setTimeout(() => { s.destroy(); resolve({ closed: false, replies }); }, 3000);
    s.on('close', () => { clearTimeout(timer); resolve({ closed: true, replies }); });
  });
}

it('refuses a first frame announced at 60 KiB from its header', async () => {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(60_000);
  const r = await exchange(Buffer.concat([head, Buffer.alloc(100)]));
  expect(r.closed).toBe(true);
  expect(r.replies).toEqual([expect.objectContaining({ type: 'error', error: expect.objectContaining({ code: 'bad-frame', message: expect.stringMatching(/exceeds the \d+-byte limit/) }) })]);
});

