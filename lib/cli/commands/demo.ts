import type { Argv } from 'yargs';
import { existsSync } from 'node:fs';
import { forkDemo } from '../../demo/fork.js';
import { progress } from '../output.js';
import { boxJob } from './testbox.js';

export function demoCommand(y: Argv) {
  return y.command(
    'demo',
    'The main demo: fork a running guest into two clones. On a Xen dom0 it runs here; elsewhere in a test box',
    (a) => a.option('xen', { choices: ['stock', 'custom'] as const, default: 'custom' as const, describe: 'test box hypervisor when no Xen is here: custom has mem_paging (memory on demand), stock (Debian\'s) does not (eager clones)' })
      .option('timeout', { type: 'number', default: 600 }),
    async (argv) => {
      const onXen = existsSync('/dev/xen/privcmd') || existsSync('/proc/xen/privcmd');
      if (onXen) {
        await forkDemo((text) => {
          for (const line of text.split("\n")) console.log(`snowflock-demo: ${line}`);
        });
        return;
      }
      progress('no Xen on this machine: running the demo in the test box (real Xen 4.17 under QEMU)');
      await boxJob('demo', { hosts: 1, xen: argv.xen, timeout: argv.timeout, json: argv.json as boolean, _: [] });
    },
  );
}
