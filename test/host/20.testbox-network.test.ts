// The multi-host test box network: a namespace with a bridge and one tap per box, gone afterwards.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createBoxNetwork } from '../../lib/testbox/network.js';

const isRoot = process.getuid?.() === 0;
const links = (ns: string) => execFileSync('ip', ['-n', ns, '-o', 'link', 'show'], { encoding: 'utf8' });
const namespaces = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });

describe.skipIf(!isRoot)('test box network', () => {
  it('builds a bridge with a tap per box, and destroy removes everything', () => {
    const net = createBoxNetwork(3);
    try {
      const l = links(net.namespace);
      expect(l).toMatch(/sfbr0/);
      for (const box of [1, 2, 3]) expect(l).toMatch(new RegExp(`${net.tapFor(box)}:.*master sfbr0`));
    } finally {
      net.destroy();
    }
    expect(namespaces()).not.toContain(net.namespace);
  });
});
