// The addon's crash handler (native/crash_trace.cc, on with SNOWFLOCK_CRASH_TRACE) runs inside a
// signal handler, possibly on a thread that crashed inside malloc: it must make only
// async-signal-safe calls. build/Release/crash_trace_test (native/test/crash_trace_test.cc) ends
// with exit code 3 if the handler allocates or frees; otherwise it must die of the signal after
// printing the signal's name, the fault address and a backtrace.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const executable = join(fileURLToPath(new URL('../../..', import.meta.url)), 'build', 'Release', 'crash_trace_test');

function crash(mode: 'segv' | 'abort') {
  if (!existsSync(executable)) throw new Error(`${executable} is missing; run \`npx node-gyp build\``);
  const run = spawnSync(executable, [mode], { encoding: 'utf8', timeout: 15_000 });
  if (run.error) throw run.error;
  return run;
}

describe('the native crash handler', () => {
  it('on SIGSEGV allocates nothing, names the signal and the address, prints frames and dies of the signal', () => {
    const run = crash('segv');
    expect(run.stderr).not.toMatch(/the crash handler called/);
    expect(run.signal, run.stderr).toBe('SIGSEGV');
    expect(run.stderr).toMatch(/^snowflock: fatal signal 11 \(SIGSEGV\) at address 0x0; native backtrace:\n/);
    // frames as backtrace_symbols_fd prints them: the test's main among them (-rdynamic)
    expect(run.stderr).toMatch(/crash_trace_test\(main\+0x[0-9a-f]+\)\[0x[0-9a-f]+\]/);
  });

  it('on SIGABRT the same', () => {
    const run = crash('abort');
    expect(run.stderr).not.toMatch(/the crash handler called/);
    expect(run.signal, run.stderr).toBe('SIGABRT');
    expect(run.stderr).toMatch(/^snowflock: fatal signal 6 \(SIGABRT\) at address 0x[0-9a-f]+; native backtrace:\n/);
    expect(run.stderr.split('\n').length).toBeGreaterThan(3);
  });
});
