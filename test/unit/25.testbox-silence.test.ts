// A silent box (docs/ARCHITECTURE.md, test box notes): nudged with CTRL-a on its serial input,
// counted as woken only when the box itself prints again (Xen's "Serial input" echo is not the
// box running on), and past the frozen limit asked for its state with Xen's debug keys, then
// stopped. A fake QEMU (a shell script) stands for the box.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BoxSpec } from '../../lib/testbox/qemu.js';

const dir = mkdtempSync(join(tmpdir(), 'sf-silence-'));
const fake = join(dir, 'qemu');
const received = join(dir, 'stdin');
let bootBox: typeof import('../../lib/testbox/qemu.js').bootBox;

// MODE=sleeper: asleep until its first CTRL-a, then runs on to its result.
// MODE=hung: only Xen's echo of the input switch, whatever arrives; records its input.
const script = `#!/bin/bash
echo booting
while IFS= read -r -n1 -d '' c; do
  printf '%s' "$c" >> "${received}"
  if [ "$c" = $'\\x01' ]; then
    echo "(XEN) *** Serial input to Xen (type 'CTRL-a' three times to switch input)"
    if [ "$MODE" = sleeper ]; then echo awake; echo "SNOWFLOCK-RESULT job=test rc=0"; exit 0; fi
  fi
done
sleep 60
`;

beforeAll(async () => {
  writeFileSync(fake, script);
  chmodSync(fake, 0o755);
  process.env.SNOWFLOCK_QEMU = fake; // read when qemu.ts loads
  ({ bootBox } = await import('../../lib/testbox/qemu.js'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function spec(name: string): BoxSpec {
  return {
    box: 1, hosts: 1, flavour: 'stock', job: 'test', jobArgs: [], timeoutSec: 60,
    logFile: join(dir, `${name}.log`), silence: { nudgeAfterSec: 1, frozenAfterSec: 3 },
  };
}

describe('a silent test box', () => {
  it('is nudged, and a box that prints again after the nudge counts as woken', async () => {
    process.env.MODE = 'sleeper';
    rmSync(received, { force: true });
    const r = await bootBox(spec('sleeper'), () => {});
    expect(r.jobRc).toBe(0);
    expect(r.froze).toBe(false);
    expect(r.nudges).toEqual({ sent: 1, woke: 1 });
    expect(readFileSync(r.logFile, 'utf8')).toMatch(/SNOWFLOCK-HOST silent for \d+ s: nudging the box/);
  }, 30_000);

  it('a box that only echoes the input switch is not woken: past the frozen limit Xen is asked for its state and the box is stopped', async () => {
    process.env.MODE = 'hung';
    rmSync(received, { force: true });
    const r = await bootBox(spec('hung'), () => {});
    expect(r.froze).toBe(true);
    expect(r.jobRc).toBeNull();
    expect(r.nudges.woke).toBe(0);
    expect(r.nudges.sent).toBeGreaterThanOrEqual(1);
    // six CTRL-a for each nudge, then the debug keys after three more
    expect(readFileSync(received, 'utf8')).toBe('\x01'.repeat(6 * r.nudges.sent) + '\x01\x01\x01d0qr');
    expect(readFileSync(r.logFile, 'utf8')).toMatch(/SNOWFLOCK-HOST no output for 3 s: asking Xen for its state/);
  }, 30_000);
});
