// Which failed test box runs are run again: console logs as dom0 prints them (Xen's fault dumps,
// the suite's ownership marks, node:test's TAP) fed through the host's reader.
import { describe, expect, it } from 'vitest';
import { boxReport, judgeRun, newBoxConsole, readBoxLine, type TestboxBoxReport } from '../../lib/testbox/run.js';
import { newFaultReader, readFaultLine } from '../../lib/testbox/faults.js';

/** Xen's lines for a triple fault of dN's vCPU 0 (hvm_triple_fault: the message, then the saved state). */
const tripleFault = (domid: number, rip: string) => [
  `(XEN) d${domid}v0 Triple fault - invoking HVM shutdown action 1`,
  `(XEN) *** Dumping Dom${domid} vcpu#0 state: ***`,
  '(XEN) ----[ Xen-4.17.5  x86_64  debug=n  Not tainted ]----',
  '(XEN) CPU:    1',
  `(XEN) RIP:    ${rip}`,
  `(XEN) RFLAGS: 0000000000000046   CONTEXT: hvm guest (d${domid}v0)`,
  '(XEN) rax: 0000000000000000   rbx: 0000000000000000   rcx: 000000000000080b',
];
const GUEST_RIP = '0010:[<ffffffff8107ee05>]';
const VMRUN_RIP = 'e008:[<ffff82d0402044b5>]';

const file = (name: string) => `# SNOWFLOCK-MARK suite-file file=${name}`;
const xlGuest = (domid: number, name: string) => `# SNOWFLOCK-MARK domain d${domid} built-by=xl file=${name}`;
const clone = (domid: number, name: string) => `# SNOWFLOCK-MARK domain d${domid} built-by=other file=${name}`;
const dropped = (domid: number, name: string) => `# SNOWFLOCK-MARK domain d${domid} dropped file=${name} why=died-booting`;
const pass = (n: number, test: string) => `ok ${n} - ${test}`;
const fail = (n: number, test: string, name: string) => [`not ok ${n} - ${test}`, '  ---', `  location: '/opt/snowflock/dist/test/testbox/${name}.test.js:93:1'`, '  ...'];

function box(n: number, log: string[], o: { rc?: number | null; froze?: boolean; timedOut?: boolean; flavour?: 'stock' | 'custom'; hosts?: number } = {}): TestboxBoxReport {
  const seen = newBoxConsole();
  for (const line of log) readBoxLine(seen, line);
  const rc = o.rc === undefined ? (seen.tap.failed.length ? 1 : 0) : o.rc;
  return boxReport(
    { box: n, jobRc: rc, qemuExit: 0, timedOut: o.timedOut ?? false, watchdogFired: false, froze: o.froze ?? false, logFile: `box${n}.log`, seconds: 1 },
    seen, { flavour: o.flavour ?? 'custom', hosts: o.hosts ?? 1 },
  );
}

describe('reading triple faults off the console', () => {
  it('tells the vmrun kind (Xen\'s own code segment in the guest\'s state) from the guest kind, and a fault without a dump', () => {
    const r = newFaultReader();
    for (const l of [...tripleFault(3, GUEST_RIP), ...tripleFault(4, VMRUN_RIP), '(XEN) d5v1 Triple fault - invoking HVM shutdown action 1']) readFaultLine(r, l);
    expect(r.faults).toEqual([
      { vcpu: 'd3v0', domid: 3, kind: 'guest', rip: '0010:ffffffff8107ee05' },
      { vcpu: 'd4v0', domid: 4, kind: 'vmrun', rip: 'e008:ffff82d0402044b5' },
      { vcpu: 'd5v1', domid: 5, kind: 'unknown' },
    ]);
  });
  it('does not take a later, unrelated register dump for a fault\'s', () => {
    const r = newFaultReader();
    const filler = Array.from({ length: 20 }, (_, i) => `line ${i}`);
    for (const l of ['(XEN) d3v0 Triple fault - invoking HVM shutdown action 1', ...filler, `(XEN) RIP:    ${VMRUN_RIP}`]) readFaultLine(r, l);
    expect(r.faults[0]!.kind).toBe('unknown');
  });
});

describe('a failed run is run again only when the emulated CPU alone explains each failed file', () => {
  it('a fault in a domain of another file does not qualify', () => {
    const run = judgeRun('test', [box(1, [
      file('60.clone-run'), xlGuest(2, '60.clone-run'), clone(3, '60.clone-run'), ...tripleFault(2, GUEST_RIP), ...tripleFault(3, VMRUN_RIP), pass(1, 'restore'),
      file('70.memtap'), xlGuest(4, '70.memtap'), clone(5, '70.memtap'), ...fail(2, 'a lazy clone sees the parent\'s memory (bad=3)', '70.memtap'),
    ])]);
    expect(run.emulator).toEqual({ rerun: false, reason: 'no fault the emulator alone explains in 70.memtap' });
    expect(run.faults.map((f) => [f.vcpu, f.kind, f.file, f.builtBy, f.justifiedRerun])).toEqual([
      ['d2v0', 'guest', '60.clone-run', 'xl', false],
      ['d3v0', 'vmrun', '60.clone-run', 'other', false],
    ]);
    expect(run.faults[0]!.why).toMatch(/60\.clone-run did not fail/);
  });

  it('a boot-time fault of a guest that bootGuest started again does not qualify a later page mismatch', () => {
    const run = judgeRun('test', [box(1, [
      file('70.memtap'), xlGuest(3, '70.memtap'), ...tripleFault(3, GUEST_RIP), '# # guest sf-mt-1 (domain 3) died while booting; starting it again (2/3)', dropped(3, '70.memtap'),
      xlGuest(4, '70.memtap'), clone(5, '70.memtap'), ...fail(1, 'a lazy clone sees the parent\'s memory as of the fork (bad=12)', '70.memtap'),
    ])]);
    expect(run.emulator.rerun).toBe(false);
    expect(run.faults[0]).toMatchObject({ vcpu: 'd3v0', file: '70.memtap', builtBy: 'xl', dropped: 'died-booting', emulatorOnly: false, justifiedRerun: false });
  });

  it('a clone\'s fault of the guest or unknown kind does not qualify: a wrong page or CPU state would look the same', () => {
    const guestKind = judgeRun('test', [box(1, [file('70.memtap'), xlGuest(4, '70.memtap'), clone(5, '70.memtap'), ...tripleFault(5, GUEST_RIP), ...fail(1, 'memtap killed', '70.memtap')])]);
    expect(guestKind.emulator.rerun).toBe(false);
    expect(guestKind.faults[0]!.why).toMatch(/snowflock may have caused it/);
    const unknown = judgeRun('test', [box(1, [file('70.memtap'), clone(5, '70.memtap'), '(XEN) d5v0 Triple fault - invoking HVM shutdown action 1', ...fail(1, 'memtap killed', '70.memtap')])]);
    expect(unknown.emulator.rerun).toBe(false);
  });

  it('a parent\'s fault in the failing file qualifies', () => {
    const run = judgeRun('test', [box(1, [
      file('70.memtap'), xlGuest(4, '70.memtap'), clone(5, '70.memtap'), ...tripleFault(4, GUEST_RIP), ...fail(1, 'parent destroyed while the clone runs', '70.memtap'),
    ])]);
    expect(run.emulator).toEqual({ rerun: true, reason: '70.memtap: box 1 d4 guest' });
    expect(run.faults[0]).toMatchObject({ file: '70.memtap', builtBy: 'xl', emulatorOnly: true, justifiedRerun: true });
  });

  it('a fault of the vmrun kind qualifies, in a clone too', () => {
    const run = judgeRun('test', [box(1, [
      file('85.guest-api'), xlGuest(6, '85.guest-api'), clone(7, '85.guest-api'), ...tripleFault(7, VMRUN_RIP), ...fail(3, 'sf_kill from the guest', '85.guest-api'),
    ])]);
    expect(run.emulator.rerun).toBe(true);
    expect(run.faults[0]).toMatchObject({ kind: 'vmrun', builtBy: 'other', justifiedRerun: true });
  });

  it('ties a fault on box 2 to the same two-host file\'s failure on box 1', () => {
    const run = judgeRun('test', [
      box(1, [file('86.guest-api-hosts'), xlGuest(3, '86.guest-api-hosts'), ...fail(1, 'a guest program forks into 4 clones', '86.guest-api-hosts')]),
      box(2, [file('86.guest-api-hosts'), clone(2, '86.guest-api-hosts'), ...tripleFault(2, VMRUN_RIP), pass(1, 'a guest program forks into 4 clones')]),
    ]);
    expect(run.emulator.rerun).toBe(true);
    expect(run.faults[0]).toMatchObject({ box: 2, file: '86.guest-api-hosts', justifiedRerun: true });
  });

  it('every failed file needs its own fault', () => {
    const run = judgeRun('test', [box(1, [
      file('70.memtap'), xlGuest(4, '70.memtap'), ...tripleFault(4, GUEST_RIP), ...fail(1, 'a lazy clone', '70.memtap'),
      file('80.daemon-xen'), xlGuest(8, '80.daemon-xen'), ...fail(2, 'sf_kill ends clones that are still working', '80.daemon-xen'),
    ])]);
    expect(run.emulator).toEqual({ rerun: false, reason: 'no fault the emulator alone explains in 80.daemon-xen' });
    expect(run.faults[0]!.justifiedRerun).toBe(false);
  });

  it('a box that froze still counts as spoiled by the emulator', () => {
    const run = judgeRun('test', [box(1, [file('85.guest-api'), xlGuest(6, '85.guest-api')], { rc: null, froze: true }), box(2, [], { rc: null })]);
    expect(run.emulator).toEqual({ rerun: true, reason: 'box 1 froze (no output for 300 s)' });
  });

  it('a timeout, a failure without a file or a crashed job is final', () => {
    const withFault = [file('70.memtap'), xlGuest(4, '70.memtap'), ...tripleFault(4, GUEST_RIP)];
    expect(judgeRun('test', [box(1, withFault, { rc: null, timedOut: true })]).emulator.rerun).toBe(false);
    expect(judgeRun('test', [box(1, [...withFault, 'not ok 1 - somewhere'])]).emulator.rerun).toBe(false);
    expect(judgeRun('test', [box(1, withFault, { rc: 1 })]).emulator.rerun).toBe(false);
  });

  it('reports every fault when the run passed or was not a test run, and reruns neither', () => {
    const log = [file('70.memtap'), xlGuest(4, '70.memtap'), ...tripleFault(4, GUEST_RIP), pass(1, 'a lazy clone')];
    const passed = judgeRun('test', [box(1, log)]);
    expect(passed.ok).toBe(true);
    expect(passed.emulator).toEqual({ rerun: false, reason: 'the run passed' });
    expect(passed.faults).toHaveLength(1);
    expect(judgeRun('bench', [box(1, ['(XEN) d2v0 Triple fault - invoking HVM shutdown action 1'], { rc: 1 })]).emulator).toEqual({ rerun: false, reason: 'only test runs are run again' });
  });

  it('a skip where the file should run fails the run, and no fault excuses it', () => {
    const run = judgeRun('test', [box(1, [file('87.guest-net'), 'ok 1 - clones get their own vif # SKIP no bridge sfbr0 in this dom0'])]);
    expect(run.ok).toBe(false);
    expect(run.emulator).toEqual({ rerun: false, reason: 'no fault the emulator alone explains in 87.guest-net' });
  });
});
