// Skips per suite file, judged against where each file may skip (lib/testbox/expected-skips.ts).
import { describe, expect, it } from 'vitest';
import { newTapSummary, readTapLine } from '../../lib/testbox/tap.js';
import { judgeSkips, unexpectedSkipLines, type SkipEnvironment } from '../../lib/testbox/skips.js';

const STOCK = "Debian's Xen has no mem_paging (run with --xen custom)";
const ONE_BOX = 'single-host part runs on box 1';

/** A TAP stream: each file's mark, then its top-level results. */
function skipsOf(files: [string, string[]][]) {
  const tap = newTapSummary();
  let n = 0;
  for (const [file, results] of files) {
    readTapLine(tap, `# SNOWFLOCK-MARK suite-file file=${file}`);
    for (const r of results) readTapLine(tap, `ok ${++n} - ${r}`);
  }
  return tap.skips;
}
const skipped = (reason: string, count = 1) => Array.from({ length: count }, (_, i) => `test ${i} # SKIP ${reason}`);
const unexpected = (files: [string, string[]][], env: SkipEnvironment) => judgeSkips(skipsOf(files), env).filter((s) => !s.expected).map((s) => `${s.file}: ${s.reason}`);

describe('skips in the TAP stream', () => {
  it('are counted per suite file with node:test\'s reason', () => {
    const tap = newTapSummary();
    for (const l of ['# SNOWFLOCK-MARK suite-file file=40.multihost', 'ok 1 - dom0s reach each other # SKIP single host', '# SNOWFLOCK-MARK suite-file file=50.descriptor', 'ok 2 - save']) readTapLine(tap, l);
    expect(tap.skips).toEqual([{ file: '40.multihost', test: 'dom0s reach each other', reason: 'single host' }]);
    expect(tap.skipped).toEqual(['dom0s reach each other']);
    expect(tap.passed).toEqual(['save']);
  });
  it('a skip before any file mark belongs to no known file, and is never expected', () => {
    const tap = newTapSummary();
    readTapLine(tap, 'ok 1 - x # SKIP single host');
    expect(tap.skips[0]!.file).toBe('?');
    expect(unexpectedSkipLines(judgeSkips(tap.skips, { flavour: 'stock', hosts: 1, box: 1 }))).toEqual([
      'a test of an unknown suite file skipped "x" where it should run: single host',
    ]);
  });
});

describe('which skips each environment allows', () => {
  it('Debian\'s Xen, one box: the last CI run\'s 16 skips', () => {
    const ci: [string, string[]][] = [
      ['40.multihost', skipped('single host')], ['70.memtap', skipped(STOCK, 6)], ['75.memtap-hosts', skipped('single host')],
      ['80.daemon-xen', skipped(STOCK, 3)], ['85.guest-api', skipped(STOCK, 3)], ['86.guest-api-hosts', skipped('single host')], ['87.guest-net', skipped(STOCK)],
    ];
    expect(skipsOf(ci)).toHaveLength(16);
    expect(unexpected(ci, { flavour: 'stock', hosts: 1, box: 1 })).toEqual([]);
  });

  it('the project\'s Xen, two boxes: box 2 skips the single-host files, box 1 nothing', () => {
    const box2: [string, string[]][] = [['70.memtap', skipped(ONE_BOX, 6)], ['80.daemon-xen', skipped(ONE_BOX, 3)], ['85.guest-api', skipped(ONE_BOX, 3)], ['87.guest-net', skipped(ONE_BOX)]];
    expect(unexpected(box2, { flavour: 'custom', hosts: 2, box: 2 })).toEqual([]);
    expect(unexpected(box2, { flavour: 'custom', hosts: 2, box: 1 })).toHaveLength(13);
    expect(unexpected([['40.multihost', skipped('single host')]], { flavour: 'custom', hosts: 2, box: 1 })).toEqual(['40.multihost: single host']);
  });

  it('67 (the Debian guest\'s disk) skips without --debian-disk, and on boxes other than 1; with the disk on box 1 it must run', () => {
    const noDisk: [string, string[]][] = [['67.clone-disk', skipped('no Debian guest disk (run with --debian-disk)', 5)]];
    expect(unexpected(noDisk, { flavour: 'stock', hosts: 1, box: 1 })).toEqual([]);
    expect(unexpected(noDisk, { flavour: 'stock', hosts: 1, box: 1, debianDisk: true })).toHaveLength(5);
    expect(unexpected([['67.clone-disk', skipped('single-host file runs on box 1', 5)]], { flavour: 'stock', hosts: 2, box: 2, debianDisk: true })).toEqual([]);
  });

  it('65 (xl on clones): box 1 only, its on-demand cases need mem_paging', () => {
    expect(unexpected([['65.clone-xl', skipped('single-host file runs on box 1', 6)]], { flavour: 'custom', hosts: 2, box: 2 })).toEqual([]);
    expect(unexpected([['65.clone-xl', skipped(STOCK, 2)]], { flavour: 'stock', hosts: 1, box: 1 })).toEqual([]);
    expect(unexpected([['65.clone-xl', skipped(STOCK, 2)]], { flavour: 'custom', hosts: 1, box: 1 })).toHaveLength(2);
  });

  it('a missing guest bridge fails a test box run, not a real host\'s', () => {
    const noBridge: [string, string[]][] = [['87.guest-net', skipped('no bridge sfbr0 in this dom0')]];
    expect(unexpected(noBridge, { flavour: 'custom', hosts: 2, box: 1 })).toEqual(['87.guest-net: no bridge sfbr0 in this dom0']);
    expect(unexpected(noBridge, { flavour: 'host', hosts: 1, box: 1 })).toEqual([]);
  });

  it('the project\'s Xen without mem_paging, or a test left without its clone, is a failure', () => {
    expect(unexpected([['70.memtap', skipped('this Xen has no mem_paging: ENOSYS')]], { flavour: 'custom', hosts: 1, box: 1 })).toHaveLength(1);
    expect(unexpected([['70.memtap', skipped('this Xen has no mem_paging: ENOSYS')]], { flavour: 'host', hosts: 1, box: 1 })).toEqual([]);
    expect(unexpected([['70.memtap', skipped('no clone')]], { flavour: 'custom', hosts: 1, box: 1 })).toEqual(['70.memtap: no clone']);
    expect(unexpected([['75.memtap-hosts', skipped(STOCK)]], { flavour: 'stock', hosts: 2, box: 1 })).toEqual([`75.memtap-hosts: ${STOCK}`]);
  });

  it('a reason is allowed only for the files that give it', () => {
    expect(unexpected([['50.descriptor', skipped('single host')]], { flavour: 'stock', hosts: 1, box: 1 })).toEqual(['50.descriptor: single host']);
    expect(unexpected([['75.memtap-hosts', skipped('boxes 1 and 2 take part')]], { flavour: 'custom', hosts: 3, box: 3 })).toEqual([]);
  });

  it('tests left out by --test-name-pattern are the caller\'s choice', () => {
    expect(unexpected([['50.descriptor', skipped('test name does not match pattern')]], { flavour: 'custom', hosts: 1, box: 1 })).toEqual([]);
  });
});
