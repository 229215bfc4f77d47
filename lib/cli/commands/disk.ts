// `snowflock disk`: copy-on-write disks on this host (lib/disk): each family's frozen slices,
// the overlays its VMs write, and qemu-img check of the frozen ones. Read-only: the host
// daemon (or whoever holds a family) changes them.
import type { Argv } from 'yargs';
import { checkSlices, listOverlays, listSlices } from '../../disk/list.js';
import { DEFAULT_DISK_STATE_DIR } from '../../disk/record.js';
import { attachParentDisk, detachParentDisk } from '../../disk/parent-attach.js';
import { releaseForkDisks } from '../../clone/fork-disks.js';
import { ExitCode, printJson, table } from '../output.js';

const stateDirOption = { type: 'string', default: DEFAULT_DISK_STATE_DIR, describe: 'where disk families live ($SNOWFLOCK_STATE/disks)' } as const;

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)}`;

export function diskCommand(y: Argv) {
  return y.command('disk', 'Copy-on-write disks on this host: the slices each fork froze and the overlays clones write', (d) =>
    d
      .command(
        'slices <family>',
        'List a disk family\'s slices: the read-only state of a VM\'s disks at each fork, and where they are exported',
        (a) => a.positional('family', { type: 'string', demandOption: true }).option('state-dir', stateDirOption),
        async (argv) => {
          const rows = await listSlices(argv['state-dir'], argv.family);
          if (argv.json) return printJson({ family: argv.family, slices: rows });
          console.log(rows.length
            ? table(['FORK', 'VM', 'DISK', 'N', 'STATE', 'EXPORT', 'MiB', 'FILE'], rows.map((s) => [
              s.fork, s.vm, s.disk, s.n, s.state, s.host ? `${s.host}:${s.port}${s.frontAlive ? '' : ' (front gone)'}` : '-', mib(s.sizeBytes), s.file,
            ]))
            : `family ${argv.family} has no slices`);
        },
      )
      .command(
        'overlays',
        'List the disks VMs write on this host: parents\' and clones\' overlays, what they hold and what lies under them',
        (a) => a.option('family', { type: 'string', describe: 'only this family' }).option('state-dir', stateDirOption),
        async (argv) => {
          const rows = await listOverlays(argv['state-dir'], argv.family);
          if (argv.json) return printJson({ overlays: rows });
          console.log(rows.length
            ? table(['FAMILY', 'VM', 'DISK', 'KIND', 'EXPORT', 'LAYERS', 'ALLOCATED MiB', 'BASE'], rows.map((o) => [
              o.family, o.vm, o.disk, o.kind, o.exported ? o.export : `${o.export} (not exported)`, o.layers.length, mib(o.allocatedBytes), o.base,
            ]))
            : 'no disk overlays on this host');
          for (const o of rows) if (o.fault) console.log(`FAULT ${o.family} ${o.vm}/${o.disk} (${o.fault.code}): ${o.fault.message}`);
        },
      )
      .command(
        'check <family>',
        'qemu-img check of a family\'s frozen overlays (the slices nobody writes any more); exit 1 if one is damaged',
        (a) => a.positional('family', { type: 'string', demandOption: true }).option('state-dir', stateDirOption),
        async (argv) => {
          const rows = await checkSlices(argv['state-dir'], argv.family);
          if (argv.json) printJson({ family: argv.family, checks: rows });
          else console.log(rows.length
            ? table(['FORK', 'VM', 'DISK', 'STATUS', 'FILE'], rows.map((c) => [c.fork, c.vm, c.disk, c.ok ? 'ok' : `DAMAGED: ${c.detail}`, c.file]))
            : `family ${argv.family} has no frozen overlays`);
          process.exitCode = rows.every((c) => c.ok) ? ExitCode.ok : ExitCode.failed;
        },
      )
      .command(
        'attach-parent',
        'Put a parent\'s disk image into its family and connect it to a free /dev/nbdN (what the block-snowflock hotplug script runs); prints device= and physical-device=',
        (a) => a
          .option('family', { type: 'string', demandOption: true })
          .option('vm', { type: 'string', demandOption: true })
          .option('disk', { type: 'string', demandOption: true })
          .option('image', { type: 'string', describe: 'raw or qcow2 image or block device (absent: the family has the disk already)' })
          .option('format', { choices: ['raw', 'qcow2'] as const })
          .option('state-dir', stateDirOption),
        async (argv) => {
          const r = await attachParentDisk({
            family: argv.family, vm: argv.vm, disk: argv.disk, stateDir: argv['state-dir'],
            ...(argv.image ? { image: argv.image } : {}), ...(argv.format ? { format: argv.format } : {}),
          });
          if (argv.json) printJson(r);
          else console.log(`device=${r.device} physical-device=${r.physicalDevice} export=${r.export}`);
        },
      )
      .command(
        'detach <device>',
        'Disconnect an nbd device (nbd-client -d); with --family and --vm, take the VM\'s disks out of the family (files kept; not while a fork of it is exported)',
        (a) => a.positional('device', { type: 'string', demandOption: true })
          .option('family', { type: 'string' }).option('vm', { type: 'string' }).option('state-dir', stateDirOption),
        async (argv) => {
          const r = await detachParentDisk({ device: argv.device, stateDir: argv['state-dir'], ...(argv.family ? { family: argv.family } : {}), ...(argv.vm ? { vm: argv.vm } : {}) });
          if (argv.json) printJson(r);
          else console.log(r.removed ? `${argv.device} detached; ${argv.vm}'s disks left family ${argv.family}` : `${argv.device} detached${r.why ? ` (disks kept: ${r.why})` : ''}`);
        },
      )
      .command(
        'release <family> <fork>',
        'End a fork\'s slice export (its front stops; its clones can no longer read the slices)',
        (a) => a.positional('family', { type: 'string', demandOption: true }).positional('fork', { type: 'string', demandOption: true }).option('state-dir', stateDirOption),
        async (argv) => {
          await releaseForkDisks([{ family: argv.family, fork: argv.fork, host: '', port: 0, exports: [] }], { stateDir: argv['state-dir'] });
          if (argv.json) printJson({ released: argv.fork });
          else console.log(`fork ${argv.fork} of family ${argv.family} released`);
        },
      )
      .demandCommand(1, 'say which: slices, overlays, check, attach-parent, detach or release'),
  );
}
