/**
 * Host-test support: a private build of the worker. The scenario runner
 * itself lives in lib/mcdist/scenario.ts, shared with the benchmark.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

/**
 * Compile the worker (`entry`, default mcdist's cli-worker) and what it
 * imports into a private directory, so the test neither depends on a current
 * dist/ nor on the rest of the project compiling, and parallel runs do not
 * share output. Returns the script path and a cleanup function.
 */
export async function buildWorker(entry = 'lib/mcdist/cli-worker.ts'): Promise<{ script: string; cleanup: () => Promise<void> }> {
  const out = await mkdtemp(join(tmpdir(), 'sfmc-build-'));
  await run(process.execPath, [
    join(ROOT, 'node_modules/typescript/bin/tsc'),
    '--outDir', out, '--rootDir', ROOT,
    '--target', 'ES2022', '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
    '--strict', '--skipLibCheck', '--types', 'node',
    join(ROOT, entry),
  ], { cwd: ROOT });
  await writeFile(join(out, 'package.json'), '{"type":"module"}\n');
  return { script: join(out, entry.replace(/\.ts$/, '.js')), cleanup: () => rm(out, { recursive: true, force: true }) };
}
