// `snowflock daemon ...` as yargs sees it (the line in lib/cli/main.ts is still to be added).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { afterAll, expect, it } from 'vitest';
import { daemonCommand } from '../../../lib/daemon/command.js';
import { readKeyFile } from '../../../lib/daemon/key.js';
import { deriveHostKey, readHostCredential } from '../../../lib/daemon/host-key.js';

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

it('daemon keygen --host writes that host\'s key from the cluster key; it needs --cluster-key', async () => {
  const cluster = join(dir, 'c2.key');
  await cli(['daemon', 'keygen', '--key-file', cluster]);
  const hostFile = join(dir, 'h2.key');
  await cli(['daemon', 'keygen', '--host', 'h2', '--cluster-key', cluster, '--key-file', hostFile]);
  expect(statSync(hostFile).mode & 0o777).toBe(0o600);
  expect(readHostCredential(hostFile, undefined)).toEqual({ host: 'h2', key: deriveHostKey(readKeyFile(cluster), 'h2'), from: 'host-key' });
  await expect(cli(['daemon', 'keygen', '--host', 'h3', '--key-file', join(dir, 'h3.key')])).rejects.toThrow(/cluster-key/);
});

it('daemon host with h2\'s key file cannot call itself h1, and the master will not take a host key', async () => {
  const cluster = join(dir, 'c3.key');
  await cli(['daemon', 'keygen', '--key-file', cluster]);
  const h2 = join(dir, 'h2b.key');
  await cli(['daemon', 'keygen', '--host', 'h2', '--cluster-key', cluster, '--key-file', h2]);
  const host = (keyFile: string) => ['daemon', 'host', '--key-file', keyFile, '--master', '127.0.0.1:1', '--vcpus', '2', '--memory-mib', '1024', '--backend', 'fake', '--admin-socket', ''];
  await expect(cli([...host(h2), '--name', 'h1'])).rejects.toThrow(/is host h2's, not h1's/);
  await expect(cli(host(cluster))).rejects.toThrow(/is the cluster key: say which host this is with --name/);
  await expect(cli(['daemon', 'master', '--key-file', h2])).rejects.toThrow(/holds a host key/);
});
