// Doctor checks for copy-on-write disks: whether this host can serve disks (a
// qemu-storage-daemon and qemu-img, lib/disk) and attach them to guests (dom0's kernel NBD
// client under blkback), and if not, why.
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { QSD } from '../disk/storage-daemon.js';
import { QEMU_IMG } from '../disk/qemu-img.js';
import { check, type Check } from './check.js';

export interface DiskProbe {
  /** first line of `qemu-storage-daemon --version`, undefined when missing */
  qsd?: string;
  qemuImg?: string;
  /** kernel module states: loaded (/sys/module), available (modinfo finds it), or missing */
  nbd: ModuleState;
  blkback: ModuleState;
  /** /proc/xen/capabilities says control_d */
  dom0: boolean;
}

export type ModuleState = 'loaded' | 'built-in' | 'available' | 'missing' | 'unknown';

/** The QSD release lib/disk is tested with (Debian 12); older ones may lack what it uses. */
const TESTED = [7, 2];

export function diskChecks(p: DiskProbe): Check[] {
  return [serveCheck(p), attachCheck(p)];
}

function serveCheck(p: DiskProbe): Check {
  const title = 'serve disks (qemu-storage-daemon)';
  const missing = [
    ...(p.qsd ? [] : ['qemu-storage-daemon (apt-get install qemu-system-common)']),
    ...(p.qemuImg ? [] : ['qemu-img (apt-get install qemu-utils)']),
  ];
  if (missing.length) return check('disk.serve', 'disk', title, 'warn', `cannot serve copy-on-write disks: missing ${missing.join(', ')}`);
  const v = /version (\d+)\.(\d+)/.exec(p.qsd ?? '');
  const old = v && (Number(v[1]) < TESTED[0]! || (Number(v[1]) === TESTED[0] && Number(v[2]) < TESTED[1]!));
  const detail = `${p.qsd}; ${p.qemuImg}`;
  return old
    ? check('disk.serve', 'disk', title, 'warn', `${detail}: older than the ${TESTED.join('.')} lib/disk is tested with (qcow2 subclusters need 5.2)`)
    : check('disk.serve', 'disk', title, 'ok', `${detail}: can freeze slices, export them over NBD with TLS-PSK and keep clone overlays`);
}

function attachCheck(p: DiskProbe): Check {
  const title = 'attach disks to guests (nbd + blkback)';
  const why: string[] = [];
  if (!p.dom0) why.push('not a Xen dom0 (/proc/xen/capabilities has no control_d)');
  if (p.nbd === 'missing') why.push('no nbd kernel module (/sys/module/nbd absent, modinfo nbd finds none)');
  if (p.nbd === 'unknown') why.push('nbd module not loaded and modinfo unavailable to look for it (apt-get install kmod)');
  if (p.blkback === 'missing') why.push('no xen-blkback module');
  if (p.blkback === 'unknown') why.push('xen-blkback not loaded and modinfo unavailable to look for it');
  const have = `nbd ${p.nbd}, xen-blkback ${p.blkback}`;
  return why.length
    ? check('disk.attach', 'disk', title, 'warn', `cannot attach a clone's disk here: ${why.join('; ')} (${have})`)
    : check('disk.attach', 'disk', title, 'ok', `${have}: a clone's overlay can reach its guest through /dev/nbdN and blkback`);
}

function moduleState(name: string): ModuleState {
  const sys = name.replace(/-/g, '_');
  if (existsSync(`/sys/module/${sys}`)) return existsSync(`/sys/module/${sys}/initstate`) ? 'loaded' : 'built-in';
  const r = spawnSync('modinfo', [name], { encoding: 'utf8', timeout: 5000 });
  if (r.error) return 'unknown';
  return r.status === 0 ? 'available' : 'missing';
}

function firstLine(cmd: string): string | undefined {
  const r = spawnSync(cmd, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout.split('\n')[0]?.trim() : undefined;
}

export function probeDisks(): DiskProbe {
  let dom0 = false;
  try {
    dom0 = readFileSync('/proc/xen/capabilities', 'utf8').includes('control_d');
  } catch {
    /* not Xen */
  }
  return { qsd: firstLine(QSD), qemuImg: firstLine(QEMU_IMG), nbd: moduleState('nbd'), blkback: moduleState('xen-blkback'), dom0 };
}
