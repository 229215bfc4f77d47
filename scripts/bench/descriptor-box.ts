// VM descriptor benchmark, run inside a Xen dom0 (the test box: `scripts/bench/descriptor`).
// For test guests of 256 MiB and 1 GiB (PVH, and PV at 256 MiB): the descriptor's size as a
// fraction of guest memory, capture time and the parent's pause (descriptor alone, and with
// the full memory image of an eager clone), restore time to a running clone, and the same
// guest through `xl save -c` + `xl restore` in the same run. Ratios only: test box timings
// are emulated.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadAddon } from '../../lib/xen/native.js';
import { openXen } from '../../lib/xen/control.js';
import { readConsole, waitForConsole } from '../../lib/xen/console.js';
import { xlConfig, xlCreate, type GuestConfig } from '../../lib/xen/xl.js';
import { testGuestImage } from '../../lib/testbox/guest-image.js';
import { captureDescriptor } from '../../lib/descriptor/capture.js';
import { encodeDescriptor } from '../../lib/descriptor/format.js';
import { restoreDescriptor, destroyClone } from '../../lib/descriptor/restore.js';
import { reportMissingRows } from './missing-rows.js';

const say = (s: string) => process.stdout.write(`snowflock-bench: ${s}\n`);
const xc = openXen();
const xs = new (loadAddon().XenStore)();
const work = mkdtempSync(join(tmpdir(), 'sf-bench-'));
const image = testGuestImage();

interface Row {
  guest: string;
  memoryBytes: number;
  /** descriptor alone (PVH/HVM; PV has none without its image) */
  bare?: { bytes: number; captureMs: number; pauseMs: number };
  eager: { bytes: number; imageBytes: number; captureMs: number; pauseMs: number; restoreMs: number; firstOutputMs: number };
  xl: { bytes: number; saveMs: number; restoreMs: number; firstOutputMs: number };
}

const elapsed = (t0: number) => Date.now() - t0;

function xl(args: string[]): void {
  try {
    execFileSync('xl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`xl ${args.join(' ')} failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`);
  }
}

/** Milliseconds from t0 until a new SF-COUNT line shows on the guest's console. */
async function firstOutput(name: string, t0: number): Promise<number> {
  const seen = readConsole(name).length;
  const deadline = Date.now() + 600_000;
  while (!/SF-COUNT \d+/.test(readConsole(name).slice(seen))) {
    if (Date.now() > deadline) throw new Error(`${name} printed nothing within 10 minutes`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return elapsed(t0);
}

/** Boots a counting test guest, runs fn on it, and destroys it whatever happens. */
async function withGuest<T>(guest: GuestConfig, fn: (domid: number) => Promise<T>): Promise<T> {
  const domid = await xlCreate(guest);
  try {
    await waitForConsole(guest.name, /SF-COUNT 2 vmid=0/, 600_000);
    return await fn(domid);
  } finally {
    await xc.destroy(domid).catch(() => {});
  }
}

async function measureOurs(guest: GuestConfig, parent: number): Promise<Pick<Row, 'bare' | 'eager'>> {
  const out: Pick<Row, 'bare' | 'eager'> = { eager: undefined as never };
  if (guest.type !== 'pv') {
    const t0 = Date.now();
    const r = await captureDescriptor(xc, xs, parent);
    out.bare = { bytes: encodeDescriptor(r.descriptor).length, captureMs: elapsed(t0), pauseMs: r.pauseMs };
  }
  const imagePath = join(work, `${guest.name}.mem`);
  let t0 = Date.now();
  const r = await captureDescriptor(xc, xs, parent, { memoryImage: imagePath });
  const captureMs = elapsed(t0);
  t0 = Date.now();
  const clone = await restoreDescriptor(xc, xs, r.descriptor, { memoryImage: imagePath, vmid: 1, name: `${guest.name}-c1` });
  const restoreMs = elapsed(t0);
  const firstOutputMs = await firstOutput(clone.name, t0);
  await destroyClone(xc, xs, clone.domid, clone.uuid);
  out.eager = { bytes: encodeDescriptor(r.descriptor).length, imageBytes: statSync(imagePath).size, captureMs, pauseMs: r.pauseMs, restoreMs, firstOutputMs };
  rmSync(imagePath);
  return out;
}

/** xl save -c + xl restore of a guest snowflock has not touched (a fresh parent of the same kind). */
async function measureXl(guest: GuestConfig): Promise<Row['xl']> {
  const saveFile = join(work, `${guest.name}.xl`);
  const cfg = join(work, `${guest.name}-xl.cfg`);
  writeFileSync(cfg, xlConfig({ ...guest, name: `${guest.name}-xl` }));
  let t0 = Date.now();
  xl(['save', '-c', guest.name, saveFile]); // -c: the parent runs on, so the save is its pause
  const saveMs = elapsed(t0);
  t0 = Date.now();
  xl(['restore', cfg, saveFile]);
  const restoreMs = elapsed(t0);
  const firstOutputMs = await firstOutput(`${guest.name}-xl`, t0);
  const bytes = statSync(saveFile).size;
  xl(['destroy', `${guest.name}-xl`]);
  rmSync(saveFile);
  return { bytes, saveMs, restoreMs, firstOutputMs };
}

async function measure(type: 'pvh' | 'pv', mib: number): Promise<Row> {
  const guest: GuestConfig = { name: `bench-${type}-${mib}`, type, kernel: image.kernel, ramdisk: image.initrd, memoryMiB: mib, vcpus: 1, cmdline: 'sf.interval=1' };
  const xlRow = await withGuest(guest, () => measureXl(guest));
  const ours = await withGuest(guest, (parent) => measureOurs(guest, parent));
  return { guest: `${mib} MiB ${type.toUpperCase()}`, memoryBytes: mib << 20, ...ours, xl: xlRow };
}

const ratio = (a: number, b: number) => (!b ? 'n/a' : a / b < 0.01 ? `${(a / b).toPrecision(2)}x` : `${(a / b).toFixed(2)}x`);
const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(3)}%`;

async function main(): Promise<void> {
  const only = process.argv[2]; // "pvh", "pv", "256" or "1024": only the cases of that type or size
  const cases: ['pvh' | 'pv', number][] = [['pvh', 256], ['pvh', 1024], ['pv', 256]];
  const rows: Row[] = [];
  const missing: string[] = [];
  for (const [type, mib] of cases) {
    if (only && only !== type && only !== String(mib)) continue;
    try {
      const row = await measure(type, mib);
      say(`${row.guest}: ${JSON.stringify(row)}`);
      rows.push(row);
    } catch (e) {
      say(`${mib} MiB ${type}: FAILED: ${(e as Error).message}`);
      missing.push(`${mib} MiB ${type.toUpperCase()}`);
    }
  }
  say('');
  say('| guest | state file | size | % of memory | capture (ms) | parent paused (ms) | restore to running (ms) | first output (ms) |');
  say('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    if (r.bare) say(`| ${r.guest} | descriptor alone | ${r.bare.bytes} | ${pct(r.bare.bytes, r.memoryBytes)} | ${r.bare.captureMs} | ${r.bare.pauseMs} | (lazy clone) | |`);
    say(`| ${r.guest} | descriptor + memory image | ${r.eager.bytes} + ${r.eager.imageBytes} | ${pct(r.eager.bytes, r.memoryBytes)} + ${pct(r.eager.imageBytes, r.memoryBytes)} | ${r.eager.captureMs} | ${r.eager.pauseMs} | ${r.eager.restoreMs} | ${r.eager.firstOutputMs} |`);
    say(`| ${r.guest} | xl save -c + xl restore | ${r.xl.bytes} | ${pct(r.xl.bytes, r.memoryBytes)} | ${r.xl.saveMs} | ${r.xl.saveMs} | ${r.xl.restoreMs} | ${r.xl.firstOutputMs} |`);
  }
  say('');
  say('| guest | descriptor vs xl save file | pause: descriptor vs xl save | pause: descriptor + image vs xl save | restore vs xl restore | first output vs xl |');
  say('|---|---|---|---|---|---|');
  for (const r of rows) {
    say(`| ${r.guest} | ${ratio(r.bare?.bytes ?? r.eager.bytes, r.xl.bytes)} | ${r.bare ? ratio(r.bare.pauseMs, r.xl.saveMs) : 'n/a (PV)'} | ${ratio(r.eager.pauseMs, r.xl.saveMs)} | ${ratio(r.eager.restoreMs, r.xl.restoreMs)} | ${ratio(r.eager.firstOutputMs, r.xl.firstOutputMs)} |`);
  }
  say(`json ${JSON.stringify(rows)}`);
  reportMissingRows(say, missing);
}

await main().finally(() => {
  xs.close();
  xc.close();
  rmSync(work, { recursive: true, force: true });
});
