// Peers without the fork's key cannot make the memserver hold memory: 2000 connections that each
// announce a 1 MiB frame and send part of it before any HELLO grow the server's resident memory by
// less than 64 MiB (before the bound, each one kept what it sent for 30 s).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, expect, it } from 'vitest';
import { MAX_FRAME } from '../../../lib/memtap/protocol.js';
import { serverFixture } from '../../unit/memtap/server-fixture.js';

const root = join(import.meta.dirname, '..', '..', '..');
const fx = serverFixture();
let server: ChildProcess | undefined;
afterAll(() => {
  server?.kill('SIGKILL');
  rmSync(fx.dir, { recursive: true, force: true });
});

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

async function startServer(): Promise<{ pid: number; port: number }> {
  server = spawn(join(root, 'node_modules', '.bin', 'vite-node'), [join(import.meta.dirname, 'run-memserver.ts'), fx.descriptorPath, fx.imagePath, fx.tokenFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise<string>((resolve) => createInterface({ input: server!.stdout! }).once('line', resolve));
  const listening = JSON.parse(first) as { port: number };
  // vite-node runs the server in its own process: the pid to measure is that node process.
  return { pid: server.pid!, port: listening.port };
}

/** Opens a connection that announces a frame of MAX_FRAME bytes, sends `bytes` of it, and stays open. */
function halfOpen(port: number, bytes: number, sockets: net.Socket[]): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      const head = Buffer.alloc(4);
      head.writeUInt32LE(MAX_FRAME);
      s.write(head);
      s.write(Buffer.alloc(bytes, 0x41), () => resolve());
    });
    s.on('error', () => resolve()); // refused or reset: that is the server defending itself
    s.on('close', () => resolve());
    sockets.push(s);
  });
}

it('2000 half-open connections grow the memserver by less than 64 MiB', async () => {
  const { pid, port } = await startServer();
  await new Promise((r) => setTimeout(r, 500));
  const before = rssMiB(pid);
  const sockets: net.Socket[] = [];
  for (let i = 0; i < 2000; i += 100) {
    await Promise.all(Array.from({ length: 100 }, () => halfOpen(port, 192 * 1024, sockets)));
  }
  await new Promise((r) => setTimeout(r, 1000)); // let the server read what is in flight
  const grown = rssMiB(pid) - before;
  for (const s of sockets) s.destroy();
  expect(grown).toBeLessThan(64);
}, 120_000);
