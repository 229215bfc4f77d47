// Disk errors get a code from QEMU's words, keeping them; the undo stack takes back what an
// operation made, newest first, and goes on past a step that fails.
import { describe, expect, it } from 'vitest';
import { classify, DiskError } from '../../../lib/disk/errors.js';
import { QmpError } from '../../../lib/disk/qmp.js';
import { Undo } from '../../../lib/disk/undo.js';

describe('classify', () => {
  const cases: [string, string][] = [
    ['Requested export not available', 'unknown-export'],
    ['TLS handshake failed: The TLS connection was non-properly terminated.', 'wrong-psk'],
    ['TLS negotiation required before option 7 (go)', 'wrong-psk'],
    ["Could not write qcow2 header: No space left on device", 'no-space'],
    ['Failed to connect to 10.0.0.9:10809: Connection refused', 'unreachable'],
    ['qcow2: Marking image as corrupt: L2 table offset 0x123 unaligned', 'corrupt-overlay'],
    ["Node 'ov3' is busy: node is used as backing hd of 'ov4'", 'qemu'],
  ];
  for (const [desc, code] of cases) {
    it(`${code}: ${desc}`, () => {
      const e = classify(new QmpError('blockdev-add', 'GenericError', desc), 'opening export xvda of fork f1 at 10.0.0.9:10809');
      expect(e).toBeInstanceOf(DiskError);
      expect(e.code).toBe(code);
      expect(e.message).toMatch(/^opening export xvda of fork f1 at 10\.0\.0\.9:10809: /);
      expect(e.message).toContain(desc);
      expect(e.message).toContain('QEMU GenericError');
    });
  }

  it('keeps a DiskError as it is', () => {
    const e = new DiskError('in-use', 'fork f2 of c1 is still exported');
    expect(classify(e, 'removing c1')).toBe(e);
  });
});

describe('Undo', () => {
  it('runs steps newest first, past one that fails, and reports what it could not undo', async () => {
    const done: string[] = [];
    const u = new Undo();
    u.push('a', () => void done.push('a'));
    u.push('b', () => {
      throw new Error('busy');
    });
    u.push('c', async () => void done.push('c'));
    expect(await u.run()).toEqual(['b: busy']);
    expect(done).toEqual(['c', 'a']);
    expect(u.size).toBe(0);
  });

  it('guard undoes on failure and rethrows the failure, telling what could not be undone', async () => {
    const done: string[] = [];
    const e = await Undo.guard(async (u) => {
      u.push('node', () => void done.push('node'));
      u.push('export', () => {
        throw new Error('still in use');
      });
      throw new Error('blockdev-add: TLS handshake failed');
    }).catch((x) => x);
    expect(e.message).toBe('blockdev-add: TLS handshake failed (and undoing it failed: export: still in use)');
    expect(done).toEqual(['node']);
  });

  it('guard leaves what succeeded in place', async () => {
    const done: string[] = [];
    expect(await Undo.guard(async (u) => (u.push('x', () => void done.push('x')), 7))).toBe(7);
    expect(done).toEqual([]);
  });
});
