// Where the test guests' kernel and initramfs are: inside the test box dom0 they are baked
// into the image (env set by dom0's init); on a real Xen host they come from the cache.
// The busybox guest (images/testguest/build.sh) runs the agent's workloads; the Node guest
// (build-node.sh) adds Node.js and the sf_* guest library, for programs that fork themselves.
import { existsSync } from 'node:fs';
import { artifacts } from './paths.js';

export interface GuestImage {
  kernel: string;
  initrd: string;
}

export type GuestFlavour = 'busybox' | 'node';

export function testGuestImage(flavour: GuestFlavour = 'busybox'): GuestImage {
  const kernel = process.env.SNOWFLOCK_GUEST_KERNEL ?? artifacts.kernel();
  const initrd = flavour === 'node'
    ? process.env.SNOWFLOCK_NODE_GUEST_INITRD ?? artifacts.nodeGuestInitrd()
    : process.env.SNOWFLOCK_GUEST_INITRD ?? artifacts.guestInitrd();
  for (const [what, path] of [['kernel', kernel], [`${flavour} initramfs`, initrd]] as const) {
    if (!existsSync(path)) throw new Error(`test guest ${what} ${path} is missing; run \`snowflock testbox prepare\``);
  }
  return { kernel, initrd };
}
