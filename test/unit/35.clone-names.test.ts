import { describe, expect, it } from 'vitest';
import { cloneName } from '../../lib/clone/names.js';

describe('clone names', () => {
  it('are parent-family-vmid', () => {
    expect(cloneName('web', 'a1b2c3', 4)).toBe('web-a1b2c3-4');
  });
  it('stay a valid domain name however long the parent\'s name is', () => {
    const n = cloneName('p'.repeat(64), 'a1b2c3', 12);
    expect(n).toHaveLength(64);
    expect(n.endsWith('-a1b2c3-12')).toBe(true);
  });
});
