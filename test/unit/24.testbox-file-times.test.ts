// Seconds per suite file, read from a box's console log (the budget in docs/testing.md).
import { describe, expect, it } from 'vitest';
import { suiteFileTimes } from '../../lib/testbox/file-times.js';

const log = [
  '[  20.73] SNOWFLOCK-MARK tests-start uptime=13.22',
  '[  25.29] # SNOWFLOCK-MARK suite-file file=10.addon',
  '[  31.00] ok 1 - addon loads',
  '[  40.50] # SNOWFLOCK-MARK suite-file file=65.clone-xl',
  '[  41.00] # SNOWFLOCK-MARK suite-file file=65.clone-xl',
  '[ 190.25] SNOWFLOCK-MARK job-done rc=0 uptime=186.54',
  '[ 195.51] (XEN) Entering ACPI S5 state.',
].join('\n');

describe('suite file times', () => {
  it('each file lasts until the next starts, the last until the job is done', () => {
    expect(suiteFileTimes(log)).toEqual([{ file: '10.addon', seconds: 40.5 - 25.29 }, { file: '65.clone-xl', seconds: 190.25 - 40.5 }]);
  });

  it('a box that never finished ends its last file at its last line', () => {
    expect(suiteFileTimes(log.split('\n').slice(0, 4).join('\n'))).toEqual([{ file: '10.addon', seconds: 40.5 - 25.29 }, { file: '65.clone-xl', seconds: 0 }]);
  });

  it('a log without marks has no files', () => {
    expect(suiteFileTimes('[ 1.00] booting\n')).toEqual([]);
  });
});
