// Starting guests with Xen's own toolstack (xl). Clones are built by the addon; xl starts
// the parents that get cloned, and the test guests.
import { execFile } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface GuestConfig {
  name: string;
  type: 'pvh' | 'pv';
  kernel: string;
  ramdisk: string;
  memoryMiB: number;
  vcpus: number;
  /** extra kernel command line; noxsave is always added (AVX #UD under TCG) */
  cmdline?: string;
  /** xl's tsc_mode; left out, xl's default (RDTSC emulated by Xen where the TSC is not invariant) */
  tscMode?: 'default' | 'always_emulate' | 'native' | 'native_paravirt';
  /** xl vif specs, e.g. "bridge=xenbr0,mac=00:16:3e:00:00:01" */
  vifs?: string[];
  /** xl disk specs, e.g. "vdev=xvda, access=rw, script=block-snowflock, target=fam:web/xvda:/images/web.raw" */
  disks?: string[];
}

export function xlConfig(g: GuestConfig): string {
  const extra = ['console=hvc0', 'noxsave', g.cmdline ?? ''].filter(Boolean).join(' ');
  return [
    `name = "${g.name}"`,
    `type = "${g.type}"`,
    `kernel = "${g.kernel}"`,
    `ramdisk = "${g.ramdisk}"`,
    `extra = "${extra}"`,
    `memory = ${g.memoryMiB}`,
    `vcpus = ${g.vcpus}`,
    ...(g.tscMode ? [`tsc_mode = "${g.tscMode}"`] : []),
    ...(g.vifs?.length ? [`vif = [${g.vifs.map((v) => `"${v}"`).join(', ')}]`] : []),
    ...(g.disks?.length ? [`disk = [${g.disks.map((d) => `'${d}'`).join(', ')}]`] : []),
    'on_poweroff = "destroy"',
    'on_crash = "destroy"',
    '',
  ].join('\n');
}

/** xl create; resolves to the new domain's id. */
export async function xlCreate(g: GuestConfig): Promise<number> {
  if (!/^[A-Za-z0-9_.-]+$/.test(g.name)) throw new Error(`bad guest name "${g.name}": use letters, digits, _ . -`);
  const dir = mkdtempSync(join(tmpdir(), 'sf-xl-'));
  const cfg = join(dir, `${g.name}.cfg`);
  writeFileSync(cfg, xlConfig(g));
  try {
    await run('xl', ['create', cfg], { timeout: 120_000 });
  } catch (e) {
    throw xlFailed(`create ${g.name}`, e);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return xlDomid(g.name);
}

export async function xlDomid(name: string): Promise<number> {
  const { stdout } = await run('xl', ['domid', name], { timeout: 30_000 });
  const domid = Number(stdout.trim());
  if (!Number.isInteger(domid)) throw new Error(`xl domid ${name}: unexpected output "${stdout.trim()}"`);
  return domid;
}

/** xl destroy: for a domain xl created, libxl also removes its devices' backends and xenstore home. */
export async function xlDestroy(domid: number): Promise<void> {
  try {
    await run('xl', ['destroy', String(domid)], { timeout: 60_000 });
  } catch (e) {
    throw xlFailed(`destroy ${domid}`, e);
  }
}

/** An xl run's failure, with what xl printed on stderr. */
function xlFailed(what: string, e: unknown): Error {
  const err = e as { stderr?: string; message: string };
  return new Error(`xl ${what} failed: ${(err.stderr ?? err.message).trim()}`);
}
