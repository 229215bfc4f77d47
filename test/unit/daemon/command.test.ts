// `snowflock daemon ...` as yargs sees it (the line in lib/cli/main.ts is still to be added).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { afterAll, expect, it } from 'vitest';
import { daemonCommand } from '../../../lib/daemon/command.js';
import { readKeyFile } from '../../../lib/daemon/key.js';

const dir = mkdtempSync(join(tmpdir(), 'sf-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Parses and runs; yargs throws some refusals synchronously, so both kinds become a rejection. */
async function cli(args: string[]) {
  return daemonCommand(yargs(args).strict().exitProcess(false).fail((msg, err) => { throw err ?? new Error(msg); })).parseAsync();
}

it('daemon keygen writes a usable key file', async () => {
  const path = join(dir, 'cluster.key');
  await cli(['daemon', 'keygen', '--key-file', path]);
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(readKeyFile(path)).toHaveLength(32);
});

it('daemon host insists on naming its backend, and the Xen one on an address for its memservers', async () => {
  const base = ['daemon', 'host', '--name', 'h1', '--key-file', 'k', '--master', 'm', '--vcpus', '2', '--memory-mib', '1024'];
  await expect(cli(base)).rejects.toThrow(/Missing required argument: backend/);
  await expect(cli([...base, '--backend', 'kvm'])).rejects.toThrow(/Invalid values/);
  await expect(cli([...base, '--backend', 'xen'])).rejects.toThrow(/--backend xen needs --advertise ADDRESS/);
});
