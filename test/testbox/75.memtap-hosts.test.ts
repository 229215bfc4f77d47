// Memory on demand across hosts: box 1 forks its parent and serves the memory; box 2 builds the
// clone from the descriptor and its memtap fetches every page over the test box network from
// box 1's memserver. The descriptor and key travel on a side channel here (the daemons of the
// sf_* API carry them in production).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadAddon } from '../../lib/xen/native.js';
import { readConsole, waitForConsole } from '../../lib/xen/console.js';
import { captureDescriptor } from '../../lib/descriptor/capture.js';
import { decodeDescriptor, encodeDescriptor } from '../../lib/descriptor/format.js';
import { destroyClone } from '../../lib/descriptor/restore.js';
import { restoreLazy, type LazyClone } from '../../lib/clone/lazy.js';
import { processAlive, startMemServer } from '../../lib/memtap/spawn.js';
import { destroyQuietly, env, openXen, sleep, startTestGuest, waitUntil } from './helpers.js';
import { memPasses, memtestCmdline } from './memtest.js';

const HANDOFF_PORT = 47010;
const xc = openXen();
const xs = new (loadAddon().XenStore)();
const work = mkdtempSync(join(tmpdir(), 'sf-mth-'));
const skip = env.hosts < 2 ? 'single host' : env.flavour === 'stock' ? 'Debian\'s Xen has no mem_paging' : env.box > 2 ? 'boxes 1 and 2 take part' : false;
let parent: number | undefined;
let clone: LazyClone | undefined;

after(async () => {
  if (clone) await destroyClone(xc, xs, clone.domid, clone.uuid).catch(() => {});
  await destroyQuietly(xc, parent);
  xs.close();
  xc.close();
  rmSync(work, { recursive: true, force: true });
});

interface Handoff { descriptor: string; token: string; port: number }

async function serveParent(t: { diagnostic: (s: string) => void }): Promise<void> {
  const name = `sf-mth-parent-${process.pid}`;
  parent = await startTestGuest(name, 'pvh', memtestCmdline({ mb: 48, mode: 'rewrite', reportFree: true }), 160);
  await waitForConsole(name, /SF-MEM pass=2 /, 300_000);
  const image = join(work, 'parent.mem');
  const captured = await captureDescriptor(xc, xs, parent, { memoryImage: image });
  const descriptorPath = join(work, 'parent.sfd');
  writeFileSync(descriptorPath, encodeDescriptor(captured.descriptor));
  const token = randomBytes(32).toString('hex');
  writeFileSync(join(work, 'token'), token, { mode: 0o600 });
  const server = await startMemServer({
    descriptor: descriptorPath, image, tokenFile: join(work, 'token'), clones: 1, logFile: join(work, 'memserver.log'), host: '10.99.0.1', timeoutMs: 120_000,
  });
  const handoff: Handoff = { descriptor: encodeDescriptor(captured.descriptor).toString('base64'), token, port: server.port };
  const side = net.createServer((s) => s.end(JSON.stringify(handoff))).listen(HANDOFF_PORT, '10.99.0.1');
  // The memserver ends when box 2's clone says goodbye.
  await waitUntil('the remote clone to finish with the memserver', () => !processAlive(server.pid), 900_000);
  side.close();
  const log = readFileSync(join(work, 'memserver.log'), 'utf8');
  t.diagnostic(`memserver log tail: ${log.trim().split('\n').slice(-2).join(' | ')}`);
  assert.match(log, /"event":"finished"/);
}

async function fetchHandoff(): Promise<Handoff> {
  // Box 1 runs the single-host memtap suite first: that can take many minutes under TCG.
  const deadline = Date.now() + 1_500_000;
  for (;;) {
    const reply = await new Promise<string>((resolve) => {
      const c = net.connect(HANDOFF_PORT, '10.99.0.1');
      let data = '';
      c.on('data', (d) => (data += d));
      c.on('end', () => resolve(data));
      c.on('error', () => resolve(''));
    });
    if (reply) return JSON.parse(reply) as Handoff;
    if (Date.now() > deadline) throw new Error('box 1 never handed off its fork');
    await sleep(1000);
  }
}

async function cloneHere(t: { diagnostic: (s: string) => void }): Promise<void> {
  const h = await fetchHandoff();
  const descriptor = decodeDescriptor(Buffer.from(h.descriptor, 'base64'));
  writeFileSync(join(work, 'token'), h.token, { mode: 0o600 });
  clone = await restoreLazy(xc, xs, descriptor, {
    vmid: 1, name: `sf-mth-clone-${process.pid}`, server: { host: '10.99.0.1', port: h.port }, tokenFile: join(work, 'token'), logDir: work,
  });
  t.diagnostic(`clone ${clone.domid} on box 2: ${clone.evicted} pages out, ready in ${clone.buildMs} ms`);
  await waitUntil('two passes of the remote clone', () => memPasses(clone!.name, 1).length >= 2, 600_000);
  const passes = memPasses(clone.name, 1);
  assert.ok(passes.every((p) => p.bad === 0), JSON.stringify(passes));
  assert.match(readConsole(clone.name), /SF-MEM forked vmid=1/);
  const log = readFileSync(clone.memtapLog, 'utf8');
  assert.match(log, /"event":"ready"/);
  await destroyClone(xc, xs, clone.domid, clone.uuid);
  await waitUntil('memtap exit', () => /"event":"exit"/.test(readFileSync(clone!.memtapLog, 'utf8')), 30_000);
  clone = undefined;
}

test('a clone on box 2 runs on memory fetched from box 1\'s memserver', { skip }, async (t) => {
  if (env.box === 1) await serveParent(t);
  else await cloneHere(t);
});
