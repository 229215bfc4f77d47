import type { Argv, CommandModule } from 'yargs';
import { runMemServer } from '../../memtap/serve-command.js';

interface MemserverArgs {
  descriptor: string;
  image: string;
  host: string;
  port: number;
  'token-file': string;
  clones: number;
  'remove-on-exit'?: string;
  json?: boolean;
}

export const memserverModule: CommandModule<object, MemserverArgs> = {
  command: 'memserver',
  describe: 'Serve a fork\'s memory image to its clones\' memtaps (started by `clone`; runs until every clone is finished)',
  builder: (a) =>
    a
      .option('descriptor', { type: 'string', demandOption: true, describe: 'the parent\'s descriptor' })
      .option('image', { type: 'string', demandOption: true, describe: 'the memory image saved with it' })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on (0.0.0.0 for clones on other hosts)' })
      .option('port', { type: 'number', default: 0, describe: 'TCP port (0: any free port)' })
      .option('token-file', { type: 'string', demandOption: true, describe: 'file with the fork\'s 64-hex-digit session key' })
      .option('clones', { type: 'number', demandOption: true, describe: 'exit once this many clones said goodbye' })
      .option('remove-on-exit', { type: 'string', describe: 'directory holding the image, removed once every clone is finished' })
      .epilogue('The first stdout line is JSON: {"event":"listening","host","port","pages","evictPages","zeroPages","eagerPages"}. '
        + 'With --json, every later event is a JSON line on stdout too; otherwise they go to stderr.'),
  handler: async (argv) => {
    process.exitCode = await runMemServer({
      descriptor: argv.descriptor, image: argv.image, host: argv.host, port: argv.port, tokenFile: argv['token-file'],
      clones: argv.clones, removeOnExit: argv['remove-on-exit'], json: argv.json,
    });
  },
};

export function memserverCommand(y: Argv) {
  return y.command(memserverModule);
}
