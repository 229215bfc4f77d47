// The CLI as a user's script meets it: real processes, exit codes, --json on stdout.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const main = join(root, 'dist', 'lib', 'cli', 'main.js');
const onXen = existsSync('/dev/xen/privcmd');

function snowflock(...args: string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('snowflock CLI', () => {
  it('is built (npm run build)', () => expect(existsSync(main)).toBe(true));

  it('--help lists the commands and exit codes', () => {
    const r = snowflock('--help');
    expect(r.code).toBe(0);
    for (const cmd of ['doctor', 'list', 'pause', 'unpause', 'destroy', 'testbox', 'demo']) expect(r.stdout).toContain(`snowflock ${cmd}`);
    expect(r.stdout).toMatch(/Exit codes: 0 ok, 1 failed, 2 bad usage, 3 Xen not available/);
  });

  it('an unknown command is a usage error (exit 2)', () => {
    const r = snowflock('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown argument|Did you mean/i);
  });

  it('a bad domain id is a usage error, checked before touching Xen', () => {
    const r = snowflock('pause', 'abc');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not a domain id/);
  });

  it('destroy refuses domain 0', () => {
    const r = snowflock('destroy', '0');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing to destroy domain 0/);
  });

  it.skipIf(onXen)('list without Xen exits 3 with the reason as JSON', () => {
    const r = snowflock('list', '--json');
    expect(r.code).toBe(3);
    const err = JSON.parse(r.stdout);
    expect(err.error).toMatch(/xc_interface_open/);
    expect(err.error).toMatch(/not a Xen dom0/);
  });

  it('doctor --json gives every check an id, status and detail', () => {
    const r = snowflock('doctor', '--json', '--no-probe');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.checks.length).toBeGreaterThan(5);
    for (const c of report.checks) {
      expect(c.id).toMatch(/^[a-z0-9.-]+/);
      expect(['ok', 'warn', 'fail', 'skip']).toContain(c.status);
      expect(typeof c.detail).toBe('string');
    }
    const netns = report.checks.find((c: { id: string }) => c.id === 'host.netns');
    expect(netns?.status).toBe(process.getuid?.() === 0 ? 'ok' : 'skip');
    // setup.sh installs nftables; as root the probe makes a real bridge table in a namespace.
    const filter = report.checks.find((c: { id: string }) => c.id === 'network.family-filter');
    expect(filter?.status).toBe(process.getuid?.() === 0 ? 'ok' : 'skip');
  });

  it.skipIf(onXen)('doctor --require exits 1 when a required check is not ok', () => {
    const r = snowflock('doctor', '--json', '--no-probe', '--require', 'xen.hypervisor');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).missing).toEqual(['xen.hypervisor']);
  });
});
