import type { Argv } from 'yargs';
import { prepareArtifacts } from '../../testbox/prepare.js';
import { rerunScope, retryFits, runTestbox, type TestboxReport } from '../../testbox/run.js';
import { faultLine } from '../../testbox/retry.js';
import { judgeSkips, skipSummaryLines, unexpectedSkipLines } from '../../testbox/skips.js';
import { runSuiteOnHost } from '../../testbox/on-host.js';
import { bootBox, NUDGE_AFTER_SEC } from '../../testbox/qemu.js';
import { artifacts, type XenFlavour } from '../../testbox/paths.js';
import { ExitCode, printJson, progress, table } from '../output.js';
import { UsageError } from '../errors.js';
import { readFileSync } from 'node:fs';
import { suiteFileTimes } from '../../testbox/file-times.js';

export interface BoxArgs {
  hosts: number;
  xen: XenFlavour;
  timeout: number;
  json?: boolean;
  verbose?: boolean;
  only?: string;
  env?: string[];
  'debian-disk'?: boolean;
  _: (string | number)[];
  '--'?: (string | number)[];
}

function boxOptions(a: Argv) {
  return a
    .option('hosts', { type: 'number', default: 1, describe: 'boxes joined by one virtual network (tap + bridge in a netns)' })
    .option('xen', { choices: ['stock', 'custom'] as const, default: 'stock' as XenFlavour, describe: "Debian's Xen, or the project build with MEM_PAGING/MEM_SHARING" })
    .option('timeout', { type: 'number', default: 900, describe: 'seconds before a box is killed (its console log is kept)' })
    .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'stream every console line' })
    .option('env', { type: 'array', string: true, describe: 'KEY=VALUE for the job in dom0 (repeatable), e.g. SNOWFLOCK_XEN_DEBUG=1' })
    .option('debian-disk', { type: 'boolean', default: false, describe: 'give each box the Debian guest\'s root disk (virtio, snapshot=on) and dom0 the disk path (nbd, blkback, qemu-storage-daemon): 67.clone-disk runs' });
}

function summarize(report: TestboxReport): void {
  const tests = report.job === 'test';
  const headers = ['BOX', 'RESULT', ...(tests ? ['PASS', 'FAIL', 'SKIP'] : []), 'SECONDS', 'CONSOLE LOG'];
  console.log(table(headers, report.boxes.map((b) => [
    b.box,
    b.timedOut ? 'timeout' : b.jobRc === null ? 'no result' : b.jobRc === 0 ? 'ok' : `rc ${b.jobRc}`,
    ...(tests ? [b.tap.passed.length, b.tap.failed.length, b.tap.skipped.length] : []),
    b.seconds.toFixed(0), b.logFile,
  ])));
  for (const b of report.boxes) {
    for (const f of b.tap.failed) console.log(`box ${b.box}: FAILED ${f}`);
    for (const s of skipSummaryLines(b.skips)) console.log(`box ${b.box}: ${s}`);
    for (const s of unexpectedSkipLines(b.skips)) console.log(`box ${b.box}: FAILED ${s}`);
    if (b.jobRc !== 0) {
      console.log(`----- box ${b.box}: last console lines -----`);
      console.log(readFileSync(b.logFile, 'utf8').split('\n').slice(-60).join('\n'));
    }
  }
  if (tests) {
    for (const b of report.boxes) {
      const times = suiteFileTimes(readFileSync(b.logFile, 'utf8'));
      if (times.length) console.log(`box ${b.box} seconds per file: ${times.map((t) => `${t.file} ${t.seconds.toFixed(0)}`).join(', ')}`);
    }
  }
  for (const b of report.boxes) {
    if (b.nudges?.sent) console.log(`box ${b.box}: silent ${b.nudges.sent} time(s) for ${NUDGE_AFTER_SEC} s and nudged; ${b.nudges.woke} of the nudges woke it (an emulated timer wakeup lost: docs/ARCHITECTURE.md, test box notes)`);
  }
  for (const f of report.faults) console.log(faultLine(f));
  if (!report.ok && tests) console.log(`run again: ${report.emulator.rerun ? 'yes' : 'no'} (${report.emulator.reason})`);
}

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=([^\n]*)$/.exec(p);
    if (!m) throw new UsageError(`--env takes KEY=VALUE, got "${p}"`);
    env[m[1]!] = m[2]!;
  }
  return env;
}

/** Test runs the emulated CPU spoiled (retry.ts: emulatorVerdict) are run again, at most this often. */
const EMULATOR_RETRIES = 3;
/** ...and only while another attempt fits in this much time since the first began (retryFits; CI's 90 minutes). */
const RETRY_BUDGET_MS = 50 * 60_000;

export async function boxJob(job: 'test' | 'demo' | 'bench', argv: BoxArgs): Promise<void> {
  if (!Number.isInteger(argv.hosts) || argv.hosts < 1 || argv.hosts > 8) throw new UsageError(`--hosts must be 1..8, got ${argv.hosts}`);
  if (argv.only !== undefined && !/^[\w.-]+(,[\w.-]+)*$/.test(argv.only)) throw new UsageError(`--only takes file-name prefixes separated by commas, got "${argv.only}"`);
  const debianDisk = argv['debian-disk'] === true;
  await prepareArtifacts(argv.xen, progress, { dom0: true, debianDisk });
  progress(`booting ${argv.hosts} test box(es), Xen ${argv.xen}, job ${job} (timeout ${argv.timeout}s)`);
  const missingRows: string[] = []; // a benchmark's rows that failed (scripts/bench/missing-rows.ts)
  const run = (only: string | undefined) => runTestbox({
    hosts: argv.hosts,
    flavour: argv.xen,
    job,
    jobArgs: (argv['--'] ?? []).map(String),
    only,
    env: parseEnv(argv.env ?? []),
    timeoutSec: argv.timeout,
    ...(debianDisk ? { debianDisk: artifacts.debianDisk() } : {}),
    onLine: (box, line) => {
      if (argv.verbose) process.stderr.write(`[box${box}] ${line}\n`);
      else if (/^SNOWFLOCK-MARK|^(not )?ok \d+ - |^# (pass|fail)/.test(line)) progress(`box${box}: ${line}`);
      if (job !== 'test' && !argv.verbose && /^snowflock-(demo|bench):/.test(line)) process.stdout.write(`[box${box}] ${line}\n`);
      const missing = /^snowflock-bench: (missing rows: .*)/.exec(line);
      if (missing) missingRows.push(argv.hosts > 1 ? `box ${box}: ${missing[1]}` : missing[1]!);
    },
  });
  const earlier: TestboxReport[] = [];
  const started = Date.now();
  let attemptStarted = started;
  let scope = argv.only;
  let report = await run(scope);
  const timeForAnother = (narrowed: boolean) => retryFits({
    elapsedMs: Date.now() - started, lastAttemptMs: Date.now() - attemptStarted, narrowed, budgetMs: RETRY_BUDGET_MS,
  });
  for (;;) {
    const narrowed = rerunScope(report, scope);
    if (!report.emulator.rerun || earlier.length >= EMULATOR_RETRIES || !timeForAnother(narrowed !== scope)) break;
    if (!argv.json) summarize(report);
    progress(`the emulated machine failed: ${report.emulator.reason} (a known test box problem: docs/ARCHITECTURE.md, test box notes); `
      + `running ${narrowed === scope ? 'the job' : `the failed suite files (${narrowed})`} again`);
    scope = narrowed;
    earlier.push(report);
    attemptStarted = Date.now();
    report = await run(scope);
  }
  if (earlier.length) report = { ...report, earlierAttempts: earlier };
  if (argv.json) printJson(report);
  else summarize(report);
  for (const l of missingRows) (argv.json ? progress : console.log)(l);
  process.exitCode = report.ok ? ExitCode.ok : ExitCode.failed;
}

export function testboxCommand(y: Argv) {
  return y.command('testbox', 'The Xen test box: real Xen 4.17 under QEMU TCG, to test and demo without Xen hardware', (t) =>
    t
      .command('prepare', 'Fetch and build every artifact (cached under $SNOWFLOCK_CACHE)', (a) => boxOptions(a), async (argv) => {
        await prepareArtifacts(argv.xen, progress, { dom0: true, debianDisk: argv['debian-disk'] === true });
        if (argv.json) printJson({ hypervisor: artifacts.hypervisor(argv.xen), kernel: artifacts.kernel(), dom0: artifacts.dom0Initrd({ debianDisk: argv['debian-disk'] === true }) });
      })
      .command(
        'test',
        'Run test/testbox inside the test box (or --on-host, in this real Xen dom0)',
        (a) =>
          boxOptions(a)
            .option('on-host', { type: 'boolean', default: false, describe: 'run the suite here: this host must be a Xen dom0' })
            .option('only', { type: 'string', describe: 'only the suite files starting with these prefixes, e.g. 50 or 10,30,40' })
            .example('$0 testbox test', 'one box, Debian Xen')
            .example('$0 testbox test --xen custom --hosts 2', 'two boxes on one network, project Xen')
            .example('$0 testbox test -- --test-name-pattern=addon', 'arguments after -- go to node --test'),
        async (argv) => {
          if (argv.onHost) {
            await prepareArtifacts('stock', progress, { dom0: false });
            const { rc, tap } = await runSuiteOnHost({ flavour: 'host', only: argv.only, args: ((argv['--'] ?? []) as unknown[]).map(String), onLine: (l) => process.stdout.write(argv.json ? '' : l + '\n') });
            const skips = judgeSkips(tap.skips, { flavour: 'host', hosts: 1, box: 1 });
            if (argv.json) printJson({ onHost: true, rc, tap, skips });
            else for (const s of [...skipSummaryLines(skips), ...unexpectedSkipLines(skips).map((l) => `FAILED ${l}`)]) console.log(s);
            process.exitCode = rc === 0 && skips.every((s) => s.expected) ? ExitCode.ok : ExitCode.failed;
            return;
          }
          await boxJob('test', argv as unknown as BoxArgs);
        },
      )
      .command('demo', 'Run the demo inside a test box', (a) => boxOptions(a), (argv) => boxJob('demo', argv as unknown as BoxArgs))
      .command(
        'bench <name>',
        'Run a benchmark inside the test box (scripts/bench/<name>-box.ts); it prints ratios measured in one run',
        (a) => boxOptions(a).positional('name', { type: 'string', demandOption: true, describe: 'e.g. memtap' }).example('$0 testbox bench memtap --xen custom', 'memory on demand vs eager restore vs xl save/restore'),
        (argv) => {
          if (!/^[a-z0-9-]+$/.test(argv.name)) throw new UsageError(`bad benchmark name "${argv.name}"`);
          const args = argv as unknown as BoxArgs & { '--'?: unknown[] };
          return boxJob('bench', { ...args, '--': [argv.name, ...(args['--'] ?? [])] } as BoxArgs);
        },
      )
      .command('shell', 'Boot one test box with a shell on its console (Ctrl-a x quits)', (a) => boxOptions(a), async (argv) => {
        await prepareArtifacts(argv.xen, progress, { dom0: true });
        await bootBox({ box: 1, hosts: 1, flavour: argv.xen, job: 'shell', jobArgs: [], timeoutSec: argv.timeout, logFile: '/dev/null', interactive: true }, () => {});
      })
      .demandCommand(1, 'say which: prepare, test, demo, bench or shell'),
  );
}
