#!/usr/bin/env node
// sf: the sf_* API for shell scripts inside a VM (`node dist/lib/api/cli.js clone $T`). See cli-args.ts.
import { basename } from 'node:path';
import { runCli } from './cli-run.js';

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  invokedAs: basename(process.argv[1] ?? ''),
});
