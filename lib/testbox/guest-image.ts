// Where the test guest's kernel and initramfs are: inside the test box dom0 they are baked
// into the image (env set by dom0's init); on a real Xen host they come from the cache.
import { existsSync } from 'node:fs';
import { artifacts } from './paths.js';

export interface GuestImage {
  kernel: string;
  initrd: string;
}

export function testGuestImage(): GuestImage {
  const kernel = process.env.SNOWFLOCK_GUEST_KERNEL ?? artifacts.kernel();
  const initrd = process.env.SNOWFLOCK_GUEST_INITRD ?? artifacts.guestInitrd();
  for (const [what, path] of [['kernel', kernel], ['initramfs', initrd]] as const) {
    if (!existsSync(path)) throw new Error(`test guest ${what} ${path} is missing; run \`snowflock testbox prepare\``);
  }
  return { kernel, initrd };
}
