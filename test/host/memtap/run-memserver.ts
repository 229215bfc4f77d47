// A memserver in its own process, for tests that measure it: argv is descriptor, image, token file.
import { runMemServer } from '../../../lib/memtap/serve-command.js';

const [descriptor, image, tokenFile] = process.argv.slice(2);
process.exitCode = await runMemServer({ descriptor: descriptor!, image: image!, tokenFile: tokenFile!, clones: 1, host: '127.0.0.1', json: true });
