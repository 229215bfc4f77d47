import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { forkProcessArgv, parseForkProcessArgv, type ForkProcess } from '../../../lib/memtap/fork-process.js';

const tap: ForkProcess = { role: 'memtap-worker', options: { domid: 7, host: '10.0.0.1', port: 4100, tokenFile: '/f/token', vmid: 2, prefetch: 0, takeover: true } };

describe('fork process command line', () => {
  it('round-trips every role', () => {
    const server: ForkProcess = { role: 'memserver', options: { descriptor: '/f/p.sfd', image: '/f/p.mem', tokenFile: '/f/token', clones: 3, removeOnExit: '/f' } };
    for (const p of [tap, server, { ...tap, role: 'memtap' } as ForkProcess]) {
      const argv = forkProcessArgv(p);
      expect(argv[0]).toMatch(/fork-process-main\.js$/);
      expect(parseForkProcessArgv(argv.slice(1))).toEqual(p);
    }
  });

  it('refuses what it did not make, naming the problem', () => {
    expect(() => parseForkProcessArgv(['memtap'])).toThrow(/usage/);
    expect(() => parseForkProcessArgv(['shell', '{}'])).toThrow(/unknown fork process role "shell"/);
    expect(() => parseForkProcessArgv(['memtap', '{"domid":'])).toThrow(/not JSON/);
    expect(() => parseForkProcessArgv(['memtap', '[1]'])).toThrow(/JSON object/);
    expect(() => parseForkProcessArgv(['memtap', JSON.stringify({ ...tap.options, domid: '7' })])).toThrow(/"domid" must be a number/);
    expect(() => parseForkProcessArgv(['memserver', JSON.stringify({ descriptor: 'd', image: 'i', tokenFile: 't' })])).toThrow(/"clones" must be a number/);
    expect(() => parseForkProcessArgv(['memtap', '{}', 'extra'])).toThrow(/usage/);
  });

  // The built entry point (dist) reports a bad command line as a JSON error event and exit 1.
  it.skipIf(!existsSync('dist/lib/memtap/fork-process-main.js'))('the entry point answers a bad command line with an error event', () => {
    const r = spawnSync(process.execPath, ['dist/lib/memtap/fork-process-main.js', 'memtap', '{}'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ event: 'error', message: 'fork process option "domid" must be a number' });
  });
});
