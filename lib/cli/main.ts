#!/usr/bin/env node
// snowflock: VM fork for Xen. The dom0 command line.
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { doctorCommand } from './commands/doctor.js';
import { domainCommands } from './commands/domains.js';
import { testboxCommand } from './commands/testbox.js';
import { demoCommand } from './commands/demo.js';
import { descriptorCommand } from './commands/descriptor.js';
import { cloneCommand } from './commands/clone.js';
import { settleCommand } from './commands/settle.js';
import { memtapCommand } from './commands/memtap.js';
import { memserverCommand } from './commands/memserver.js';
import { daemonCommand } from '../daemon/command.js';
import { clusterCommands } from './commands/cluster.js';
import { diskCommand } from './commands/disk.js';
import { reportError } from './errors.js';
import { ExitCode } from './output.js';

async function main(): Promise<void> {
  const argv = hideBin(process.argv);
  const json = argv.includes('--json');
  let cli: Argv = yargs(argv)
    .scriptName('snowflock')
    .usage('$0 <command> [options]\n\nVM fork for Xen: clone a running VM onto many hosts, with memory on demand.')
    .option('json', { type: 'boolean', default: false, global: true, describe: 'machine-readable output on stdout' })
    .parserConfiguration({ 'populate--': true })
    .strict()
    .demandCommand(1, 'say which command; --help lists them')
    .recommendCommands()
    .epilogue('Exit codes: 0 ok, 1 failed, 2 bad usage, 3 Xen not available here (hosts, families, daemon status: the host daemon or its master).\nDocs: README.md, docs/ARCHITECTURE.md')
    .help()
    .alias('h', 'help')
    .version()
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`snowflock: ${msg}\nRun snowflock --help for usage.\n`);
      process.exit(ExitCode.usage);
    }) as unknown as Argv;
  cli = doctorCommand(cli);
  cli = domainCommands(cli);
  cli = cloneCommand(cli);
  cli = settleCommand(cli);
  cli = descriptorCommand(cli);
  cli = memserverCommand(cli);
  cli = memtapCommand(cli);
  cli = daemonCommand(cli);
  cli = clusterCommands(cli);
  cli = diskCommand(cli);
  cli = testboxCommand(cli);
  cli = demoCommand(cli);
  try {
    await cli.parseAsync();
  } catch (e) {
    process.exitCode = reportError(e, json);
  }
}

await main();
