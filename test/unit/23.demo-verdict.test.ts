// The demo fails (exit 1 through the CLI's error path) when a clone saw a page unlike the parent's.
import { describe, expect, it } from 'vitest';
import { checkMismatches, patternMismatches } from '../../lib/demo/verdict.js';

const text = [
  'SF-MEM pass=1 gen=1 bad=0 pages=16384 vmid=0',
  'SF-MEM forked vmid=1',
  'SF-MEM pass=2 gen=1 bad=0 pages=16384 vmid=1',
  'SF-MEM pass=3 gen=1 bad=7 pages=16384 vmid=1',
  'SF-MEM pass=3 gen=1 bad=5 pages=16384 vmid=12',
].join('\n');

describe('the demo\'s verdict', () => {
  it('adds the mismatches of one clone\'s passes, not another vmid\'s', () => {
    expect(patternMismatches(text, 1)).toBe(7);
    expect(patternMismatches(text, 0)).toBe(0);
    expect(patternMismatches(text, 2)).toBe(0);
  });
  it('passes with no mismatch and fails naming the count otherwise', () => {
    expect(() => checkMismatches(0)).not.toThrow();
    expect(() => checkMismatches(7)).toThrow(/7 pattern page\(s\) did not match in the clones/);
  });
});
