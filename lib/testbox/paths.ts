// Where the test box keeps what it downloads, builds and logs. One directory, named in the
// README, so CI can cache it and a user can delete it.
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';

export function cacheDir(): string {
  return process.env.SNOWFLOCK_CACHE ?? join(homedir(), '.cache', 'snowflock');
}

export function testboxDir(): string {
  return join(cacheDir(), 'testbox');
}

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('snowflock: cannot find the package root');
    dir = up;
  }
  return dir;
}

/** A short name for this checkout (its path), for artifacts built from its tree. */
function checkoutKey(): string {
  return createHash('sha256').update(repoRoot()).digest('hex').slice(0, 8);
}

export type XenFlavour = 'stock' | 'custom';

export const artifacts = {
  hypervisor: (flavour: XenFlavour) => join(testboxDir(), `xen-${flavour}.elf`),
  kernel: () => join(testboxDir(), 'vmlinux'),
  guestInitrd: () => join(cacheDir(), 'images', 'testguest', 'initrd.cpio'),
  nodeGuestInitrd: () => join(cacheDir(), 'images', 'testguest', 'node-initrd.cpio'),
  /** the Debian guest (images/debian/build.sh): its root disk and initramfs */
  debianDisk: () => join(cacheDir(), 'images', 'debian', 'xvda.ext4'),
  debianInitrd: () => join(cacheDir(), 'images', 'debian', 'initrd.cpio'),
  /**
   * dom0's initramfs holds this checkout's build, with or without the disk path: one file per
   * checkout and option, so box runs from two worktrees, or with and without --debian-disk,
   * never boot each other's.
   */
  dom0Initrd: (o: { debianDisk?: boolean } = {}) => join(testboxDir(), `dom0-${checkoutKey()}${o.debianDisk ? '-disk' : ''}.cpio`),
  runsDir: () => join(testboxDir(), 'runs'),
};
