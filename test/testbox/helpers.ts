// Shared by the test box suite: where it runs, and guests that are always cleaned up.
import { existsSync, readdirSync } from 'node:fs';
import { openXen } from '../../lib/xen/control.js';
import { xlCreate, xlDestroy, type GuestConfig } from '../../lib/xen/xl.js';
import { testGuestImage } from '../../lib/testbox/guest-image.js';
import { spawnSync } from 'node:child_process';
import { readConsole, waitForConsole } from '../../lib/xen/console.js';
import type { XenControl, XenStore } from '../../lib/xen/native.js';
import { domainMark } from '../../lib/testbox/faults.js';
import { suiteFileMark, suiteFileName } from '../../lib/testbox/tap.js';

export const env = {
  inTestbox: process.env.SNOWFLOCK_TESTBOX === '1',
  flavour: process.env.SNOWFLOCK_XEN_FLAVOUR ?? 'host',
  hosts: Number(process.env.SNOWFLOCK_HOSTS ?? '1'),
  box: Number(process.env.SNOWFLOCK_BOX ?? '1'),
};

// Ownership marks for the host's retry rule (lib/testbox/retry.ts): which suite file this
// process runs, and every domain that appears while it does. node:test runs one file per
// process, one at a time, and prints each file's stderr as "# ..." lines on dom0's console.
const suiteFile = suiteFileName(process.argv[1] ?? 'unknown');
const mark = (line: string) => process.stderr.write(`${line}\n`);
mark(suiteFileMark(suiteFile));
/** xl creates in flight: a domain that appears meanwhile is bootGuest's, which marks it itself */
let xlCreating = 0;
const markedDomains = new Set<number>();
if (env.inTestbox) watchNewDomains();

/**
 * Marks each domain that appears while this file runs (clones built by snowflock or by the
 * daemons, the feature probe's domain, an xl restore) as this file's, built by something other
 * than the suite's xl create. Twice a second: building a domain takes longer than that.
 */
function watchNewDomains(): void {
  let xc: XenControl;
  try {
    xc = openXen();
  } catch {
    return; // not a dom0: no domains to own
  }
  for (const d of xc.listDomains()) markedDomains.add(d.domid); // earlier files' leftovers
  const look = () => {
    if (xlCreating > 0) return;
    let domains;
    try {
      domains = xc.listDomains();
    } catch {
      return; // a mark missed leaves a fault unclaimed (no rerun); it must never fail the file
    }
    for (const d of domains) {
      if (markedDomains.has(d.domid)) continue;
      markedDomains.add(d.domid);
      mark(domainMark(d.domid, { file: suiteFile, builtBy: 'other' }));
    }
  };
  setInterval(look, 500).unref();
}

export async function startTestGuest(name: string, type: 'pvh' | 'pv', cmdline = '', memoryMiB = 128, vifs: string[] = []): Promise<number> {
  const image = testGuestImage();
  return bootGuest({ name, type, kernel: image.kernel, ramdisk: image.initrd, memoryMiB, vcpus: 1, cmdline, vifs, ...testTsc() });
}

/**
 * xl create, then wait for the guest agent's first line. In the test box a fresh guest now and
 * then triple-faults in early boot (in the kernel's TSC calibration, before any snowflock code
 * touched it: the emulated CPU, docs/ARCHITECTURE.md); it is destroyed on crash and started
 * again, twice at most. On a real host a guest that dies booting fails the test.
 */
async function bootGuest(g: GuestConfig): Promise<number> {
  const attempts = env.inTestbox ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const seen = agentUps(g.name);
    xlCreating++;
    let domid: number;
    try {
      domid = await xlCreate(g);
      markedDomains.add(domid);
      mark(domainMark(domid, { file: suiteFile, builtBy: 'xl' }));
    } finally {
      xlCreating--;
    }
    const deadline = Date.now() + 300_000;
    const xc = openXen();
    try {
      for (;;) {
        if (agentUps(g.name) > seen) return domid;
        const gone = !xc.listDomains().some((d) => d.domid === domid && !d.dying && d.shutdownReason !== 'crash');
        if (gone) break;
        if (Date.now() > deadline) throw new Error(`guest ${g.name} (domain ${domid}) printed no SF-AGENT line within 300 s`);
        await sleep(250);
      }
      if (attempt >= attempts) throw new Error(`guest ${g.name} died while booting ${attempts} times (see the Xen console for the triple fault)`);
      process.stderr.write(`# guest ${g.name} (domain ${domid}) died while booting; starting it again (${attempt + 1}/${attempts})\n`);
      mark(domainMark(domid, { file: suiteFile, dropped: 'died-booting' }));
      await destroyQuietly(xc, domid); // on_crash=destroy may have taken it already
    } finally {
      xc.close();
    }
  }
}

const agentUps = (name: string) => (readConsole(name).match(/SF-AGENT up /g) ?? []).length;

/**
 * The emulated CPU has no invariant TSC, so by default Xen intercepts and emulates every RDTSC of
 * an HVM/PVH guest; the test box's triple faults strike on instructions Xen emulates. Native
 * TSC keeps RDTSC out of Xen in the test box (clones inherit the mode from the descriptor).
 * SNOWFLOCK_TEST_TSC_MODE overrides it ('default' for Xen's own choice).
 */
function testTsc(): { tscMode?: GuestConfig['tscMode'] } {
  const mode = process.env.SNOWFLOCK_TEST_TSC_MODE ?? (env.inTestbox ? 'native' : 'default');
  return mode === 'default' ? {} : { tscMode: mode as GuestConfig['tscMode'] };
}

/** A Node test guest running `program` (images/testguest/programs) under the guest agent. */
export async function startNodeGuest(name: string, workload: 'node' | 'shell', program: string, args: string[], o: { memoryMiB?: number; ip?: string } = {}): Promise<number> {
  const image = testGuestImage('node');
  const cmdline = `sf.workload=${workload} sf.program=${program}${args.length ? ` sf.args=${args.join(',')}` : ''}${o.ip ? ` sf.ip=${o.ip}` : ''}`;
  // With an address, a vif on dom0's guest bridge (scripts/testbox/dom0-init).
  const vifs = o.ip ? [`bridge=${GUEST_BRIDGE}`] : [];
  return bootGuest({ name, type: 'pvh', kernel: image.kernel, ramdisk: image.initrd, memoryMiB: o.memoryMiB ?? 384, vcpus: 1, cmdline, vifs, ...testTsc() });
}

/**
 * The Debian guest (images/debian) with its root disk given by `disks` (xl disk specs), running
 * `program` of images/testguest/programs under the agent's shell workload (or node, with args).
 * Only in a box started with --debian-disk (dom0-init sets SNOWFLOCK_DEBIAN_INITRD), or where
 * that is set.
 */
export async function startDebianGuest(name: string, program: string, disks: string[], o: { memoryMiB?: number; workload?: 'shell' | 'node'; args?: string[] } = {}): Promise<number> {
  const initrd = process.env.SNOWFLOCK_DEBIAN_INITRD;
  if (!initrd) throw new Error('no Debian guest initramfs (SNOWFLOCK_DEBIAN_INITRD): start the box with --debian-disk');
  const { kernel } = testGuestImage();
  const args = o.args?.length ? ` sf.args=${o.args.join(',')}` : '';
  return bootGuest({
    name, type: 'pvh', kernel, ramdisk: initrd, memoryMiB: o.memoryMiB ?? 256, vcpus: 1,
    cmdline: `root=/dev/xvda sf.workload=${o.workload ?? 'shell'} sf.program=${program}${args}`, disks, ...testTsc(),
  });
}

/** Why this dom0 cannot put a guest's disk through a disk family (nbd, nbd-client, block-snowflock), or false. */
export function diskPathMissing(): string | false {
  if (!existsSync('/sys/block/nbd0')) return 'this dom0 cannot attach disks: no nbd module loaded';
  if (spawnSync('nbd-client', ['-h']).error) return 'this dom0 cannot attach disks: no nbd-client';
  if (!existsSync('/etc/xen/scripts/block-snowflock')) return 'this dom0 cannot attach disks: no /etc/xen/scripts/block-snowflock';
  return false;
}

let commandSeq = 0;
/**
 * Runs a shell command in a guest running images/testguest/programs/sf-commands.sh (a command
 * written to its data/sf-cmd runs once and answers "SF-CMD <seq> rc=<rc> <output>" on its
 * console); resolves with its rc and output (one line).
 */
export async function guestCommand(xs: XenStore, name: string, domid: number, command: string, timeoutMs = 180_000): Promise<{ rc: number; out: string }> {
  const n = ++commandSeq;
  const path = `/local/domain/${domid}/data/sf-cmd`;
  xs.write(path, `${n} ${command}`);
  xs.setPermissions(path, [{ domid }, { domid: 0, read: true }]);
  // The whole line: xenconsoled may have logged only part of it when the console is read.
  const [m] = await waitForConsole(name, new RegExp(`SF-CMD ${n} rc=(\\d+) ?(.*?)\\r?\\n`), timeoutMs);
  return { rc: Number(m![1]), out: m![2]!.trim() };
}

/** The test box dom0's bridge for guests' vifs; dom0 is 10.98.0.(250 + box)/24 on it. */
export const GUEST_BRIDGE = 'sfbr0';

/**
 * Destroys the domain if it still exists; for after() hooks. Through xl first: for a guest xl
 * created, a bare destroy hypercall would leave libxl's vif backends and xenstore home behind
 * for the next test to find.
 */
export async function destroyQuietly(xc: XenControl, domid: number | undefined): Promise<void> {
  if (domid === undefined) return;
  try {
    await xlDestroy(domid);
    return;
  } catch {
    /* not xl's to destroy, or already gone */
  }
  try {
    await xc.destroy(domid);
  } catch {
    /* already gone */
  }
}

export function domainIds(xc: XenControl): number[] {
  return xc.listDomains().map((d) => d.domid);
}

export { openXen };

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until cond() is true; fails with what was last seen. */
export async function waitUntil(what: string, cond: () => boolean, timeoutMs: number, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Why a single-host memory-on-demand file cannot run here, or false when it can (box 1 with mem_paging). */
export async function memPagingSkip(xc: XenControl): Promise<string | false> {
  if (env.flavour === 'stock') return 'Debian\'s Xen has no mem_paging (run with --xen custom)';
  if (env.box !== 1) return 'single-host part runs on box 1';
  const f = await xc.probeFeatures();
  return f.memPaging.available ? false : `this Xen has no mem_paging: ${f.memPaging.reason}`;
}

/** /dev/nbdN devices connected now (dom0's nbd client: 67 and 68 count what a fork leaves). */
export const connectedNbd = (): string[] => (existsSync('/sys/block') ? readdirSync('/sys/block').filter((n) => /^nbd\d+$/.test(n) && existsSync(`/sys/block/${n}/pid`)).sort() : []);
