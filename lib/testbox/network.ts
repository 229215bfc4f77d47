// The virtual network that joins several test boxes: a network namespace holding a Linux
// bridge and one tap device per box. Taps on a bridge deliver multicast without echoing a
// box's own frames back to it (QEMU's socket hubs do), and keep the host's network untouched.
import { execFileSync } from 'node:child_process';

export interface BoxNetwork {
  namespace: string;
  tapFor(box: number): string;
  destroy(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function createBoxNetwork(hosts: number): BoxNetwork {
  if (process.getuid?.() !== 0) throw new Error('a multi-host test box needs root (network namespace, bridge, taps)');
  const namespace = `sfbox${process.pid}`;
  const tapFor = (box: number) => `sftap${box}`;
  const destroy = () => {
    try {
      ip('netns', 'delete', namespace);
    } catch {
      /* already gone */
    }
  };
  try {
    ip('netns', 'add', namespace);
    ip('-n', namespace, 'link', 'set', 'lo', 'up');
    ip('-n', namespace, 'link', 'add', 'sfbr0', 'type', 'bridge');
    ip('-n', namespace, 'link', 'set', 'sfbr0', 'up');
    for (let box = 1; box <= hosts; box++) {
      ip('-n', namespace, 'tuntap', 'add', 'dev', tapFor(box), 'mode', 'tap');
      ip('-n', namespace, 'link', 'set', tapFor(box), 'master', 'sfbr0', 'up');
    }
  } catch (e) {
    destroy();
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`cannot build the test box network: ${stderr || (e as Error).message}`);
  }
  return { namespace, tapFor, destroy };
}
