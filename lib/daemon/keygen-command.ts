/**
 * `snowflock daemon keygen`: the cluster key for the master, or one host's key derived from it
 * (host-key.ts). The cluster key stays on the master; each host gets only its own key file, so a
 * host whose key is stolen can be impersonated, but no other host can.
 */
import type { CommandModule } from 'yargs';
import { readKeyFile, writeKeyFile } from './key.js';
import { writeHostKeyFile } from './host-key.js';

interface KeygenArgs { 'key-file': string; host?: string; 'cluster-key'?: string }

export const keygenModule: CommandModule<object, KeygenArgs> = {
  command: 'keygen',
  describe: 'Create the cluster key file (for the master), or with --host NAME --cluster-key K a host\'s own key file; mode 600, never overwritten',
  builder: (a) => a
    .option('key-file', { type: 'string', demandOption: true, describe: 'the file to create' })
    .option('host', { type: 'string', implies: 'cluster-key', describe: 'write this host\'s key ("snowflock-host-key v1 NAME HEX"), derived from the cluster key; give it to that host\'s daemon as --key-file' })
    .option('cluster-key', { type: 'string', implies: 'host', describe: 'the cluster key file the host key derives from (with --host)' }) as never,
  handler: (argv) => {
    if (argv.host !== undefined) {
      writeHostKeyFile(argv['key-file'], readKeyFile(argv['cluster-key']!), argv.host);
      process.stderr.write(`snowflock: wrote host ${argv.host}'s key to ${argv['key-file']}; copy it to that host only (mode 600), and start its daemon with --key-file\n`);
      return;
    }
    writeKeyFile(argv['key-file']);
    process.stderr.write(`snowflock: wrote a new cluster key to ${argv['key-file']}; keep it on the master, and make each host its own key: snowflock daemon keygen --host NAME --cluster-key ${argv['key-file']} --key-file NAME.key\n`);
  },
};
