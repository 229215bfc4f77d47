// The host side of the test box: the QEMU command line and the parsing of dom0's console.
import { describe, expect, it } from 'vitest';
import { qemuArgv } from '../../lib/testbox/qemu.js';
import { newTapSummary, readTapLine } from '../../lib/testbox/tap.js';
import { rerunScope, retryFits, type TestboxBoxReport, type TestboxReport } from '../../lib/testbox/run.js';
import { xlConfig } from '../../lib/xen/xl.js';

const spec = {
  box: 2, hosts: 3, flavour: 'custom' as const, job: 'test' as const, jobArgs: ['--test-name-pattern=a,b'],
  timeoutSec: 300, logFile: '/dev/null', network: { namespace: 'ns', tap: 'sftap2' },
};

describe('qemu command line', () => {
  const argv = qemuArgv(spec);
  const after = (flag: string) => argv[argv.indexOf(flag) + 1];

  it('gives dom0 the Debian guest\'s disk only when asked (--debian-disk): a virtio drive whose writes are thrown away', () => {
    expect(argv).not.toContain('-drive');
    expect(argv.join(' ')).not.toContain('snowflock.disk=');
    const withDisk = qemuArgv({ ...spec, debianDisk: '/cache/images/debian/xvda,1.ext4' });
    expect(withDisk[withDisk.indexOf('-drive') + 1]).toBe('file=/cache/images/debian/xvda,,1.ext4,if=virtio,format=raw,snapshot=on');
    expect(withDisk[withDisk.indexOf('-initrd') + 1]).toContain(' snowflock.disk=debian');
    // a dom0 with the disk path is a file of its own: a run without it never boots that one
    expect(withDisk[withDisk.indexOf('-initrd') + 1]).toMatch(/,[^,]*\/dom0-[0-9a-f]{8}-disk\.cpio$/);
  });

  it('uses TCG with the CPU model Xen survives', () => {
    expect(after('-accel')).toBe('tcg');
    expect(after('-cpu')).toBe('max,-smap,-rdtscp');
  });

  it('gives the box 3 GiB, or SNOWFLOCK_TESTBOX_MEMORY_MIB (the descriptor bench), and refuses nonsense', () => {
    expect(after('-m')).toBe('3072');
    const saved = process.env.SNOWFLOCK_TESTBOX_MEMORY_MIB;
    try {
      process.env.SNOWFLOCK_TESTBOX_MEMORY_MIB = '6144';
      const big = qemuArgv(spec);
      expect(big[big.indexOf('-m') + 1]).toBe('6144');
      process.env.SNOWFLOCK_TESTBOX_MEMORY_MIB = '6G';
      expect(() => qemuArgv(spec)).toThrow(/SNOWFLOCK_TESTBOX_MEMORY_MIB must be a number of MiB/);
    } finally {
      if (saved === undefined) delete process.env.SNOWFLOCK_TESTBOX_MEMORY_MIB;
      else process.env.SNOWFLOCK_TESTBOX_MEMORY_MIB = saved;
    }
  });

  it('boots the chosen hypervisor build', () => {
    expect(after('-kernel')).toMatch(/xen-custom\.elf$/);
  });

  it('doubles commas inside the dom0 module line and passes the job', () => {
    const modules = after('-initrd')!;
    const [kernelLine, initrd] = modules.split(/(?<!,),(?!,)/);
    expect(initrd).toMatch(/dom0-[0-9a-f]{8}\.cpio$/); // this checkout's, without the disk path
    expect(kernelLine).toContain('snowflock.job=test');
    expect(kernelLine).toContain('snowflock.box=2');
    expect(kernelLine).toContain('snowflock.hosts=3');
    const b64 = /snowflock\.args=(\S+)/.exec(kernelLine!)![1]!;
    expect(b64).not.toMatch(/[ ,]/);
    expect(Buffer.from(b64, 'base64').toString()).toBe('--test-name-pattern=a,b\n');
  });

  it('attaches the box to its tap with a per-box MAC', () => {
    expect(after('-netdev')).toBe('tap,id=n0,ifname=sftap2,script=no,downscript=no');
    expect(after('-device')).toBe('virtio-net-pci,netdev=n0,mac=52:54:00:5f:00:02');
  });

  it('keeps the dom0 watchdog inside the QEMU timeout', () => {
    const w = /snowflock\.watchdog=(\d+)/.exec(after('-initrd')!);
    expect(Number(w![1])).toBeLessThan(spec.timeoutSec);
  });
});

describe('TAP from the dom0 console', () => {
  it('collects top-level results and the summary', () => {
    const tap = newTapSummary();
    for (const line of [
      'TAP version 13',
      '# Subtest: a',
      '    ok 1 - nested does not count',
      'ok 1 - a',
      'not ok 2 - b',
      'ok 3 - c # SKIP single host',
      '(XEN) something unrelated',
      '# tests 3',
      '# pass 1',
      '# fail 1',
      '# skipped 1',
    ]) readTapLine(tap, line);
    expect(tap.passed).toEqual(['a']);
    expect(tap.failed).toEqual(['b']);
    expect(tap.skipped).toEqual(['c']);
    expect(tap.counts).toEqual({ tests: 3, pass: 1, fail: 1, skipped: 1 });
  });
  it('names the suite files that failures point at, once each', () => {
    const tap = newTapSummary();
    for (const line of [
      'not ok 21 - the same job',
      '  ---',
      "  location: '/opt/snowflock/dist/test/testbox/85.guest-api.test.js:51:1'",
      'not ok 22 - sf_kill',
      "  location: '/opt/snowflock/dist/test/testbox/85.guest-api.test.js:67:1'",
      "    location: '/opt/snowflock/dist/test/testbox/86.guest-api-hosts.test.js:89:1'",
      "  location: '/somewhere/else/helper.js:3:1'",
    ]) readTapLine(tap, line);
    expect(tap.failedFiles).toEqual(['85.guest-api', '86.guest-api-hosts']);
    expect(tap.failed).toEqual(['the same job', 'sf_kill']);
  });
});

describe('xl guest config', () => {
  it('always carries noxsave and the console', () => {
    const cfg = xlConfig({ name: 'g', type: 'pvh', kernel: '/k', ramdisk: '/r', memoryMiB: 128, vcpus: 1, cmdline: 'sf.workload=spin' });
    expect(cfg).toContain('type = "pvh"');
    expect(cfg).toContain('extra = "console=hvc0 noxsave sf.workload=spin"');
    expect(cfg).toContain('memory = 128');
    expect(cfg).not.toMatch(/^disk =/m);
  });

  it('gives a guest its disks through a hotplug script', () => {
    const cfg = xlConfig({ name: 'g', type: 'pvh', kernel: '/k', ramdisk: '/r', memoryMiB: 256, vcpus: 1, disks: ['vdev=xvda, access=rw, script=block-snowflock, target=deb:g/xvda:/dev/vda'] });
    expect(cfg).toContain("disk = ['vdev=xvda, access=rw, script=block-snowflock, target=deb:g/xvda:/dev/vda']");
  });
});

describe('what a rerun runs', () => {
  const box = (n: number, o: { failed?: string[]; files?: string[]; timedOut?: boolean; froze?: boolean; rc?: number | null } = {}): TestboxBoxReport => ({
    box: n, jobRc: o.rc === undefined ? (o.failed?.length ? 1 : 0) : o.rc, qemuExit: 0, timedOut: o.timedOut ?? false, watchdogFired: false,
    froze: o.froze ?? false, seconds: 1, logFile: `box${n}.log`,
    tap: { ...newTapSummary(), failed: o.failed ?? [], failedFiles: o.files ?? [] }, marks: [], faults: [{ vcpu: 'd5v0', domid: 5, kind: 'vmrun' }], skips: [],
  });
  const report = (boxes: TestboxBoxReport[]): TestboxReport => ({ ok: false, hosts: boxes.length, flavour: 'custom', job: 'test', runDir: '/r', boxes, faults: [], emulator: { rerun: true, reason: '' } });

  it('only the files that failed, across all boxes, when every box finished', () => {
    const r = report([box(1, { failed: ['x', 'y'], files: ['86.guest-api-hosts', '85.guest-api'] }), box(2, { failed: ['y'], files: ['86.guest-api-hosts'] })]);
    expect(rerunScope(r, '10,85,86')).toBe('85.guest-api,86.guest-api-hosts');
  });
  it('everything asked for when a box timed out, froze, ended without a result, or a failure names no file', () => {
    expect(rerunScope(report([box(1, { failed: ['x'], files: ['85.guest-api'] }), box(2, { timedOut: true, rc: null })]), '10,85')).toBe('10,85');
    expect(rerunScope(report([box(1, { froze: true, rc: null })]), undefined)).toBeUndefined();
    expect(rerunScope(report([box(1, { rc: 1 })]), '70')).toBe('70');
    expect(rerunScope(report([box(1, { failed: ['x'] })]), '70,80')).toBe('70,80');
  });
});

describe('whether a rerun fits the budget', () => {
  const min = 60_000;
  it('counts a whole rerun as long as the last attempt, a rerun of failed files as half', () => {
    expect(retryFits({ elapsedMs: 25 * min, lastAttemptMs: 25 * min, narrowed: false, budgetMs: 50 * min })).toBe(true);
    expect(retryFits({ elapsedMs: 26 * min, lastAttemptMs: 26 * min, narrowed: false, budgetMs: 50 * min })).toBe(false);
    expect(retryFits({ elapsedMs: 26 * min, lastAttemptMs: 26 * min, narrowed: true, budgetMs: 50 * min })).toBe(true);
    expect(retryFits({ elapsedMs: 40 * min, lastAttemptMs: 26 * min, narrowed: true, budgetMs: 50 * min })).toBe(false);
  });
});
