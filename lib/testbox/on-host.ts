// `--on-host`: the test box suite run directly in this machine's dom0 (a real Xen host, the
// nightly hardware CI), with the same files and the same node:test runner as inside QEMU.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { artifacts, repoRoot, type XenFlavour } from './paths.js';
import { newTapSummary, readTapLine, type TapSummary } from './tap.js';

export async function runSuiteOnHost(opts: { flavour: XenFlavour | 'host'; only?: string; args: string[]; onLine?: (l: string) => void }): Promise<{ rc: number; tap: TapSummary }> {
  const tap = newTapSummary();
  const env = {
    ...process.env,
    SNOWFLOCK_TESTBOX: '0',
    SNOWFLOCK_HOSTS: '1',
    SNOWFLOCK_BOX: '1',
    SNOWFLOCK_XEN_FLAVOUR: opts.flavour,
    SNOWFLOCK_GUEST_KERNEL: process.env.SNOWFLOCK_GUEST_KERNEL ?? artifacts.kernel(),
    SNOWFLOCK_GUEST_INITRD: process.env.SNOWFLOCK_GUEST_INITRD ?? artifacts.guestInitrd(),
    SNOWFLOCK_NODE_GUEST_INITRD: process.env.SNOWFLOCK_NODE_GUEST_INITRD ?? artifacts.nodeGuestInitrd(),
  };
  const suite = join(repoRoot(), 'dist', 'test', 'testbox');
  const files = readdirSync(suite).filter((f) => f.endsWith('.test.js') && (opts.only ?? '').split(',').some((p) => f.startsWith(p))).sort().map((f) => join(suite, f));
  if (files.length === 0) throw new Error(`no compiled tests in ${suite}; run npm run build`);
  const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=tap', ...opts.args, ...files], {
    cwd: repoRoot(),
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let pending = '';
  child.stdout.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      readTapLine(tap, line);
      opts.onLine?.(line);
    }
  });
  const rc = await new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  return { rc, tap };
}
