// The QMP client against a scripted monitor on a unix socket: greeting and capabilities
// negotiation, answers matched by id (also out of order), events (also ones that came before
// the wait), errors that name the command and QEMU's class and description, a closed monitor.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpClient, QmpError } from '../../../lib/disk/qmp.js';

interface Script {
  /** answer a command; return undefined to hold it */
  onCommand: (cmd: { execute: string; arguments?: Record<string, unknown>; id: string }, sock: Socket) => unknown;
  greeting?: string;
}

const servers: { server: Server; dir: string }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) {
    s.server.close();
    rmSync(s.dir, { recursive: true, force: true });
  }
});

async function monitor(script: Script): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'sfqmp-'));
  const path = join(dir, 'qmp.sock');
  const server = createServer((sock) => {
    sock.write((script.greeting ?? JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'test' }, capabilities: ['oob'] } })) + '\r\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const cmd = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (cmd.execute === 'qmp_capabilities') {
          sock.write(JSON.stringify({ return: {}, id: cmd.id }) + '\r\n');
          continue;
        }
        const answer = script.onCommand(cmd, sock);
        if (answer !== undefined) sock.write(JSON.stringify({ ...(answer as object), id: cmd.id }) + '\r\n');
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  servers.push({ server, dir });
  return path;
}

describe('QMP client', () => {
  it('negotiates capabilities, then matches answers to commands by id, in any order', async () => {
    const held: { id: string; sock: Socket }[] = [];
    const path = await monitor({
      onCommand: (c, sock) => {
        if (c.execute === 'slow') {
          held.push({ id: c.id, sock });
          return undefined;
        }
        if (c.execute === 'fast') {
          // answer the fast one, then the slow one held before it
          setImmediate(() => held.forEach((h) => h.sock.write(JSON.stringify({ return: 'slow-answer', id: h.id }) + '\n')));
          return { return: { echoed: c.arguments } };
        }
        return { return: {} };
      },
    });
    const q = await QmpClient.connect(path);
    expect(q.greeting.version.qemu.major).toBe(7);
    const slow = q.execute('slow');
    const fast = q.execute('fast', { a: 1 });
    await expect(fast).resolves.toEqual({ echoed: { a: 1 } });
    await expect(slow).resolves.toBe('slow-answer');
    q.close();
  });

  it('an error names the command, QEMU\'s class and its description', async () => {
    const path = await monitor({ onCommand: () => ({ error: { class: 'GenericError', desc: "Cannot find device='nope' nor node-name='nope'" } }) });
    const q = await QmpClient.connect(path);
    const e: unknown = await q.execute('blockdev-del', { 'node-name': 'nope' }).catch((x: QmpError) => x);
    expect(e).toBeInstanceOf(QmpError);
    expect(e).toMatchObject({ command: 'blockdev-del', errorClass: 'GenericError', desc: "Cannot find device='nope' nor node-name='nope'" });
    expect((e as QmpError).message).toBe("blockdev-del: Cannot find device='nope' nor node-name='nope' (QEMU GenericError)");
    q.close();
  });

  it('delivers events, and a wait from a mark finds an event that came before it', async () => {
    const path = await monitor({
      onCommand: (c, sock) => {
        sock.write(JSON.stringify({ event: 'BLOCK_EXPORT_DELETED', data: { id: c.arguments?.id }, timestamp: { seconds: 1, microseconds: 2 } }) + '\n');
        return { return: {} };
      },
    });
    const q = await QmpClient.connect(path);
    const seen: string[] = [];
    q.on('event', (e) => seen.push(`${e.event}:${String(e.data.id)}`));
    const mark = q.eventMark();
    await q.execute('block-export-del', { id: 'x1' }); // the event arrives before the answer
    const e = await q.waitEvent('BLOCK_EXPORT_DELETED', (d) => d.id === 'x1', { since: mark, timeoutMs: 1000 });
    expect(e.timestamp).toEqual({ seconds: 1, microseconds: 2 });
    expect(seen).toEqual(['BLOCK_EXPORT_DELETED:x1']);
    // another id is not that event
    await expect(q.waitEvent('BLOCK_EXPORT_DELETED', (d) => d.id === 'x2', { since: mark, timeoutMs: 100 })).rejects.toThrow(/no BLOCK_EXPORT_DELETED event in 100 ms/);
    q.close();
  });

  it('a monitor that closes fails the command in flight, naming it; later commands fail at once', async () => {
    const path = await monitor({ onCommand: (_c, sock) => void sock.destroy() });
    const q = await QmpClient.connect(path);
    await expect(q.execute('quit')).rejects.toThrow(/connection closed before quit was answered/);
    await expect(q.execute('query-version')).rejects.toThrow(/cannot run query-version/);
  });

  it('a monitor that never greets (held by another client) times out, saying so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sfqmp-'));
    const path = join(dir, 'qmp.sock');
    const server = createServer(() => {});
    await new Promise<void>((r) => server.listen(path, r));
    servers.push({ server, dir });
    await expect(QmpClient.connect(path, { timeoutMs: 200 })).rejects.toThrow(/no greeting in 200 ms \(another client holds this monitor\?\)/);
  });

  it('a command not answered in time is named', async () => {
    const path = await monitor({ onCommand: () => undefined });
    const q = await QmpClient.connect(path, { commandTimeoutMs: 100 });
    await expect(q.execute('query-block-exports')).rejects.toThrow(/query-block-exports not answered in 100 ms/);
    q.close();
  });
});
