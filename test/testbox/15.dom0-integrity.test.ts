// The test box itself: dom0's own computations must stay intact while Xen saves and restores
// guests. Under QEMU 7.2's TCG with AVX enabled in dom0, a 64 MiB buffer's hash changed during
// `xl restore` (with Xen's own toolstack, no snowflock code involved): the emulator loses AVX
// state across Xen's vCPU switches. dom0 therefore boots with noxsave; this test guards that.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createHash, randomBytes } from 'node:crypto';
import { waitForConsole } from '../../lib/xen/console.js';
import { xlConfig, xlDomid } from '../../lib/xen/xl.js';
import { testGuestImage } from '../../lib/testbox/guest-image.js';
import { destroyQuietly, openXen, startTestGuest } from './helpers.js';

const xc = openXen();
const work = mkdtempSync(join(tmpdir(), 'sf-integrity-'));
const names = [`sf-int-${process.pid}`, `sf-int-${process.pid}-r`];
after(async () => {
  for (const n of names) await destroyQuietly(xc, await xlDomid(n).catch(() => undefined));
  xc.close();
  rmSync(work, { recursive: true, force: true });
});

/** Hashes one buffer over and over while allocating; returns how many rounds agreed. */
function hashRounds(buf: Buffer, expected: string, ms: number): number {
  let rounds = 0;
  for (const end = Date.now() + ms; Date.now() < end; rounds++) {
    assert.equal(createHash('sha256').update(buf).digest('hex'), expected, `dom0 memory changed under us after ${rounds} rounds`);
    const objects = Array.from({ length: 10_000 }, (_, i) => ({ i, s: String(i) }));
    assert.equal(objects[9_999]!.s, '9999');
  }
  return rounds;
}

test('dom0 computations stay intact while xl saves and restores a guest', async (t) => {
  const [parent, restored] = names as [string, string];
  await startTestGuest(parent, 'pvh');
  await waitForConsole(parent, /SF-COUNT \d+/, 120_000, 2);
  const buf = randomBytes(16 << 20);
  const expected = createHash('sha256').update(buf).digest('hex');
  const image = join(work, 'saved.img');
  execFileSync('xl', ['save', '-c', parent, image], { stdio: 'ignore' });
  const g = testGuestImage();
  const cfg = join(work, 'restored.cfg');
  writeFileSync(cfg, xlConfig({ name: restored, type: 'pvh', kernel: g.kernel, ramdisk: g.initrd, memoryMiB: 128, vcpus: 1 }));
  execFileSync('xl', ['restore', cfg, image], { stdio: 'ignore' });
  t.diagnostic(`hash rounds while the restored guest resumes: ${hashRounds(buf, expected, 5000)}`);
  await waitForConsole(restored, /SF-COUNT \d+/, 120_000, 1);
  t.diagnostic(`hash rounds with both guests running: ${hashRounds(buf, expected, 5000)}`);
});
