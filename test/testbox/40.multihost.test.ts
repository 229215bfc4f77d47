// Several test boxes: every dom0 reaches every other by TCP and by UDP multicast
// (later issues clone across hosts and multicast pages). One box: nothing to check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { env, sleep } from './helpers.js';

const GROUP = '239.255.77.1';
const PORT = 47001;
const TCP_PORT = 47002;
const addr = (box: number) => `10.99.0.${box}`;
const peers = Array.from({ length: env.hosts }, (_, i) => i + 1).filter((b) => b !== env.box);

test('dom0s of all boxes reach each other by TCP and UDP multicast', { skip: env.hosts < 2 ? 'single host' : false }, async () => {
  // TCP: each box listens; connect to every peer (retrying while they boot).
  const server = net.createServer((s) => s.end(`box${env.box}\n`)).listen(TCP_PORT, addr(env.box));
  const tcpFrom = new Set<number>();
  const deadline = Date.now() + 240_000;
  for (const peer of peers) {
    while (!tcpFrom.has(peer)) {
      const reply = await new Promise<string>((resolve) => {
        const c = net.connect(TCP_PORT, addr(peer));
        let data = '';
        c.on('data', (d) => (data += d));
        c.on('end', () => resolve(data));
        c.on('error', () => resolve(''));
      });
      if (reply.trim() === `box${peer}`) tcpFrom.add(peer);
      else if (Date.now() > deadline) assert.fail(`box ${peer} not reachable by TCP`);
      else await sleep(500);
    }
  }

  // Multicast: everyone joins the group and announces itself until it has heard every peer
  // (and a little longer, so slower peers hear it too).
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((r) => sock.bind(PORT, () => r()));
  sock.addMembership(GROUP, addr(env.box));
  sock.setMulticastInterface(addr(env.box));
  const heard = new Set<number>();
  sock.on('message', (msg) => {
    const m = /^hello from box(\d+)$/.exec(msg.toString());
    if (m && Number(m[1]) !== env.box) heard.add(Number(m[1]));
  });
  const mcastDeadline = Date.now() + 120_000;
  let extra = 20;
  while (extra > 0) {
    sock.send(`hello from box${env.box}`, PORT, GROUP);
    await sleep(250);
    if (heard.size === peers.length) extra--;
    if (Date.now() > mcastDeadline) break;
  }
  sock.close();
  server.close();
  assert.deepEqual([...heard].sort(), peers, 'multicast heard from every peer');
});
