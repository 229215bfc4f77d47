// Where an eager clone's memory image is written: a fresh private directory, never a path
// another local user could have planted a symbolic link or a directory of their own at.
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eagerWorkdir } from '../../../lib/clone/eager.js';

const root = mkdtempSync(join(tmpdir(), 'sf-eager-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const mode = (p: string) => lstatSync(p).mode & 0o7777;

describe('an eager clone\'s work directory', () => {
  let savedTmp: string | undefined;
  beforeEach(() => { savedTmp = process.env.TMPDIR; });
  afterEach(() => { if (savedTmp === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = savedTmp; });

  it('by default is a new 0700 directory, not the predictable <tmp>/snowflock a planted link could redirect', () => {
    const tmp = join(root, 'tmp');
    const elsewhere = join(root, 'elsewhere');
    mkdirSync(tmp, { mode: 0o1777 });
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, join(tmp, 'snowflock'));
    process.env.TMPDIR = tmp;
    const a = eagerWorkdir();
    const b = eagerWorkdir();
    expect(a).not.toBe(b);
    for (const d of [a, b]) {
      expect(d.startsWith(`${tmp}/`)).toBe(true);
      expect(lstatSync(d).isDirectory()).toBe(true);
      expect(mode(d)).toBe(0o700);
    }
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it('under a given directory is a new 0700 directory inside it, made if missing', () => {
    const given = join(root, 'given', 'deeper');
    const d = eagerWorkdir(given);
    expect(d.startsWith(`${given}/`)).toBe(true);
    expect(mode(d)).toBe(0o700);
    expect(mode(given)).toBe(0o700);
  });

  it('refuses a given directory that is a symbolic link, and writes nothing where it points', () => {
    const target = join(root, 'target');
    mkdirSync(target);
    symlinkSync(target, join(root, 'link'));
    expect(() => eagerWorkdir(join(root, 'link'))).toThrow(/is a symbolic link/);
    expect(readdirSync(target)).toEqual([]);
  });

  it('refuses a given directory other users may write to without the sticky bit', () => {
    const open = join(root, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(() => eagerWorkdir(open)).toThrow(/others can write to/);
    chmodSync(open, 0o1777);
    expect(existsSync(eagerWorkdir(open))).toBe(true);
  });
});
