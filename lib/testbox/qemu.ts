// Boots one test box: the real Xen 4.17 hypervisor under QEMU TCG with the project's dom0.
// Every run is bounded twice: `timeout` around QEMU, and the dom0 watchdog inside.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { artifacts, type XenFlavour } from './paths.js';

// -smap: TCG's SMAP crashes a PV dom0 at once. -rdtscp: a PVH guest dies in SVM insn-length emulation.
// SNOWFLOCK_TESTBOX_CPU, SNOWFLOCK_TESTBOX_XENARGS and SNOWFLOCK_TESTBOX_DOM0ARGS override the
// CPU model and add Xen and dom0 boot options, for experiments.
// The emulator; SNOWFLOCK_QEMU names another build (its firmware is found next to it).
const QEMU_BINARY = process.env.SNOWFLOCK_QEMU ?? 'qemu-system-x86_64';
const CPU_MODEL = process.env.SNOWFLOCK_TESTBOX_CPU ?? 'max,-smap,-rdtscp';

export interface BoxSpec {
  box: number;
  hosts: number;
  flavour: XenFlavour;
  job: 'test' | 'demo' | 'bench' | 'shell';
  jobArgs: string[];
  /** test job: only the suite files whose names start with one of these comma-separated prefixes */
  only?: string;
  /** environment for the job in dom0, e.g. SNOWFLOCK_XEN_DEBUG=1 */
  env?: Record<string, string>;
  timeoutSec: number;
  logFile: string;
  network?: { namespace: string; tap: string };
  interactive?: boolean;
  /**
   * The Debian guest's root disk image, given to dom0 as a virtio drive (/dev/vda) with
   * snapshot=on (the box's writes go to a temporary file, never to the image), and the disk
   * path's modules loaded in dom0 (snowflock.disk=debian). Absent: the box is as before.
   */
  debianDisk?: string;
  /** Aborting stops this box's QEMU (another box of the run froze). */
  signal?: AbortSignal;
  /** silences that count (NUDGE_AFTER_SEC, FROZEN_AFTER_SEC unless given: the runner's tests shorten them) */
  silence?: { nudgeAfterSec: number; frozenAfterSec: number };
}

/**
 * dom0 prints SNOWFLOCK-ALIVE every minute; a box silent this long has frozen (seen once under
 * TCG: Xen, dom0 and guests all stopped, QEMU idle) and is stopped rather than left to its timeout.
 */
export const FROZEN_AFTER_SEC = 300;

/**
 * A box silent this long is nudged: six CTRL-a on its serial input (Xen takes the input, then
 * gives it back to dom0), whose interrupts wake an idle Xen. Under TCG a box has been seen with
 * every CPU idle in Xen and dom0's timer overdue by minutes, resumed by the first serial
 * interrupt (docs/ARCHITECTURE.md, test box notes): a lost timer wakeup of the emulator. A box
 * that goes on printing after a nudge was asleep, not hung; each nudge is logged and reported.
 */
export const NUDGE_AFTER_SEC = 90;

export interface BoxResult {
  box: number;
  /** the job's exit status as dom0 reported it; null when dom0 never reported one */
  jobRc: number | null;
  qemuExit: number | null;
  timedOut: boolean;
  watchdogFired: boolean;
  /** The box printed nothing for FROZEN_AFTER_SEC and was stopped. */
  froze: boolean;
  /** Times the box was silent for NUDGE_AFTER_SEC and was nudged, and how many of those it woke. */
  nudges: { sent: number; woke: number };
  logFile: string;
  seconds: number;
}

/** Job arguments travel base64-encoded, one per line: the kernel command line splits on spaces. */
export function encodeJobArgs(args: string[]): string {
  const bad = args.find((a) => a.includes('\n'));
  if (bad !== undefined) throw new Error(`a test box job argument cannot contain a newline: ${JSON.stringify(bad)}`);
  return args.length ? Buffer.from(args.join('\n') + '\n').toString('base64') : '';
}

function dom0CommandLine(spec: BoxSpec): string {
  const args = encodeJobArgs(spec.jobArgs);
  return [
    // noxsave: QEMU 7.2's TCG loses AVX state across Xen's vCPU switches; with AVX, dom0
    // processes saw their memcpy/hash results change while other domains ran (docs/ARCHITECTURE.md).
    'console=hvc0 earlyprintk=xen noxsave',
    process.env.SNOWFLOCK_TESTBOX_DOM0ARGS ?? '',
    `snowflock.job=${spec.job}`,
    `snowflock.box=${spec.box}`,
    `snowflock.hosts=${spec.hosts}`,
    `snowflock.xen=${spec.flavour}`,
    `snowflock.watchdog=${Math.max(30, spec.timeoutSec - 15)}`,
    args ? `snowflock.args=${args}` : '',
    spec.only ? `snowflock.only=${spec.only}` : '',
    spec.debianDisk ? 'snowflock.disk=debian' : '',
    spec.env && Object.keys(spec.env).length ? `snowflock.env=${encodeJobArgs(Object.entries(spec.env).map(([k, v]) => `${k}=${v}`))}` : '',
  ].filter(Boolean).join(' ');
}

/** The box's RAM; a later dom0_mem= in SNOWFLOCK_TESTBOX_XENARGS overrides dom0's 1536 MiB. */
function boxMemoryMiB(): string {
  const v = process.env.SNOWFLOCK_TESTBOX_MEMORY_MIB ?? '3072';
  if (!/^\d+$/.test(v) || Number(v) < 2048) throw new Error(`SNOWFLOCK_TESTBOX_MEMORY_MIB must be a number of MiB, at least 2048 (got "${v}")`);
  return v;
}

export function qemuArgv(spec: BoxSpec): string[] {
  // QEMU's multiboot -initrd separates modules with ',' so a literal comma is written ',,'.
  const modules = `${artifacts.kernel()} ${dom0CommandLine(spec).replaceAll(',', ',,')},${artifacts.dom0Initrd({ debianDisk: spec.debianDisk !== undefined })}`;
  const xenArgs = `dom0_mem=1536M,max:1536M dom0_max_vcpus=1 console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all ${process.env.SNOWFLOCK_TESTBOX_XENARGS ?? ''}`.trim();
  const net = spec.network
    ? ['-netdev', `tap,id=n0,ifname=${spec.network.tap},script=no,downscript=no`,
       '-device', `virtio-net-pci,netdev=n0,mac=52:54:00:5f:00:${spec.box.toString(16).padStart(2, '0')}`]
    : [];
  return [
    '-machine', 'q35', '-accel', 'tcg', '-cpu', CPU_MODEL, '-smp', '2', '-m', boxMemoryMiB(),
    '-nodefaults', '-display', 'none', '-no-reboot',
    ...(spec.interactive ? ['-serial', 'mon:stdio'] : ['-serial', 'stdio', '-monitor', 'none']),
    ...net,
    // QEMU's -drive separates options with ',' too: a comma in the path is written ',,'.
    ...(spec.debianDisk ? ['-drive', `file=${spec.debianDisk.replaceAll(',', ',,')},if=virtio,format=raw,snapshot=on`] : []),
    '-kernel', artifacts.hypervisor(spec.flavour), '-append', xenArgs, '-initrd', modules,
  ];
}

export function bootBox(spec: BoxSpec, onLine: (line: string) => void): Promise<BoxResult> {
  const started = Date.now();
  const qemu = ['timeout', '--foreground', '-k', '5', String(spec.timeoutSec), QEMU_BINARY, ...qemuArgv(spec)];
  const argv = spec.network ? ['ip', 'netns', 'exec', spec.network.namespace, ...qemu] : qemu;
  // stdin is Xen's serial input: a frozen box is asked for its state through it (askXenForState).
  const child = spawn(argv[0]!, argv.slice(1), { stdio: spec.interactive ? 'inherit' : ['pipe', 'pipe', 'pipe'] });
  child.stdin?.on('error', () => {}); // QEMU gone: nothing to ask
  const log = createWriteStream(spec.logFile);
  let jobRc: number | null = null;
  let watchdogFired = false;
  let pending = '';
  let lastOutput = Date.now();
  let froze = false;
  const nudges = { sent: 0, woke: 0 };
  let nudgedAt = 0;
  const stop = () => child.kill('SIGTERM'); // timeout passes it on to QEMU, then kills it after 5 s
  spec.signal?.addEventListener('abort', stop, { once: true });
  const { nudgeAfterSec, frozenAfterSec } = spec.silence ?? { nudgeAfterSec: NUDGE_AFTER_SEC, frozenAfterSec: FROZEN_AFTER_SEC };
  const frozenCheck = setInterval(() => {
    const silentMs = Date.now() - lastOutput;
    if (!spec.interactive && jobRc === null && silentMs > nudgeAfterSec * 1000 && nudgedAt < lastOutput && !froze) {
      nudgedAt = Date.now();
      nudges.sent++;
      hostNote(`SNOWFLOCK-HOST silent for ${Math.round(silentMs / 1000)} s: nudging the box (serial interrupt)`);
      child.stdin?.write('\x01'.repeat(6));
    }
    if (!spec.interactive && jobRc === null && silentMs > frozenAfterSec * 1000) {
      froze = true;
      clearInterval(frozenCheck);
      askXenForState(child.stdin, hostNote, frozenAfterSec).finally(stop);
    }
  }, Math.min(10_000, nudgeAfterSec * 250));

  const logLine = (line: string) => log.write(`[${((Date.now() - started) / 1000).toFixed(2).padStart(7)}] ${line}\n`);
  /** A line of the host's own in the box's log: not output of the box, so no sign of life. */
  const hostNote = (line: string) => {
    logLine(line);
    onLine(line);
  };
  const consume = (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const lines = pending.replaceAll('\r', '').split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      logLine(line);
      // Xen's answer to a nudge's CTRL-a is no sign that the box runs on.
      if (!/\*\*\* Serial input to /.test(line)) {
        if (nudgedAt > lastOutput && !froze) nudges.woke++; // the box's first output after a nudge
        lastOutput = Date.now();
      }
      const result = /SNOWFLOCK-RESULT job=\S+ rc=(\d+)(.*)/.exec(line);
      if (result) {
        jobRc = Number(result[1]);
        watchdogFired = /watchdog/.test(result[2] ?? '');
      }
      onLine(line);
    }
  };
  child.stdout?.on('data', consume);
  child.stderr?.on('data', consume);

  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`cannot start QEMU: ${e.message} (apt-get install qemu-system-x86)`)));
    child.on('close', (code) => {
      clearInterval(frozenCheck);
      spec.signal?.removeEventListener('abort', stop);
      if (pending) consume(Buffer.from('\n'));
      log.end();
      resolve({
        box: spec.box,
        jobRc,
        qemuExit: code,
        timedOut: code === 124 || code === 137,
        watchdogFired,
        froze,
        nudges,
        logFile: spec.logFile,
        seconds: (Date.now() - started) / 1000,
      });
    });
  });
}

/**
 * What a frozen box was doing, in its log: Xen's debug keys on its serial input (three CTRL-a
 * give the input to Xen): 'd' every CPU's registers and stack, '0' dom0's vCPUs, 'q' each
 * domain's vCPUs, 'r' the run queues. Xen answering shows the hypervisor alive; silence, a
 * box stuck below dom0.
 */
async function askXenForState(stdin: NodeJS.WritableStream | null, note: (line: string) => void, silentSec: number): Promise<void> {
  if (!stdin) return;
  note(`SNOWFLOCK-HOST no output for ${silentSec} s: asking Xen for its state (debug keys d 0 q r)`);
  // Paced as a person at the console would, and scaled down with the silences in the runner's tests.
  const pace = Math.min(2000, silentSec * 100);
  stdin.write('\x01\x01\x01');
  for (const key of ['d', '0', 'q', 'r']) {
    await new Promise((r) => setTimeout(r, pace));
    stdin.write(key);
  }
  await new Promise((r) => setTimeout(r, pace * 10));
  note('SNOWFLOCK-HOST end of the frozen box\'s state');
}
