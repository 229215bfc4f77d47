// `snowflock descriptor inspect` as a script meets it: a good file, a corrupt one, a missing one.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { encodeDescriptor } from '../../lib/descriptor/format.js';
import { sampleDescriptor } from '../fixtures/descriptor.js';

const main = join(import.meta.dirname, '..', '..', 'dist', 'lib', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'sf-inspect-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function snowflock(...args: string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('snowflock descriptor inspect', () => {
  const good = join(dir, 'good.sfd');
  writeFileSync(good, encodeDescriptor(sampleDescriptor()));

  it('summarises a descriptor for people', () => {
    const r = snowflock('descriptor', 'inspect', good);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/source\s+p \(domain 3 on h\), PVH/);
    expect(r.stdout).toMatch(/memory\s+129 MiB max, 32770 pages populated in 3 ranges/);
    expect(r.stdout).toMatch(/special\s+store_pfn@0xfeffc console_pfn@0xfefff/);
  });

  it('and for scripts', () => {
    const r = snowflock('descriptor', 'inspect', good, '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.meta.source.name).toBe('p');
    expect(j.memoryMap).toEqual([[0, 32768], [0xfeffc, 1], [0xfefff, 1]]);
    expect(j.params['17']).toBe('0xfefff');
  });

  it('names the corruption and exits 1', () => {
    const bytes = encodeDescriptor(sampleDescriptor());
    bytes[bytes.length - 300]! ^= 0xff;
    const bad = join(dir, 'bad.sfd');
    writeFileSync(bad, bytes);
    const r = snowflock('descriptor', 'inspect', bad);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.sfd: section SpecialPages is corrupt \(checksum mismatch\)/);
  });

  it('names a missing file', () => {
    const r = snowflock('descriptor', 'inspect', join(dir, 'nope.sfd'), '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatch(/cannot read .*nope\.sfd/);
  });
});
