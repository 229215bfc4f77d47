import type { Argv } from 'yargs';
import { readFileSync, writeFileSync, rmSync, renameSync } from 'node:fs';
import { withXenSession } from '../../xen/session.js';
import { resolveDomain } from '../../xen/resolve.js';
import { captureDescriptor } from '../../descriptor/capture.js';
import { restoreDescriptor } from '../../descriptor/restore.js';
import { decodeDescriptor, encodeDescriptor } from '../../descriptor/format.js';
import { describeDescriptor } from '../../descriptor/describe.js';
import { DescriptorError } from '../../descriptor/errors.js';
import { printJson, progress } from '../output.js';

function readDescriptor(file: string) {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new DescriptorError(`cannot read ${file}: ${(e as Error).message}`);
  }
  return { descriptor: decodeDescriptor(bytes, file), bytes: bytes.length };
}

export function descriptorCommand(y: Argv) {
  return y.command('descriptor', 'VM descriptors: save a running VM\'s state to a small file, inspect it, start copies from it', (d) =>
    d
      .command(
        'save <domain>',
        'Suspend a PVH/HVM guest briefly, write its descriptor (and optionally a full memory image), resume it',
        (a) =>
          a
            .positional('domain', { type: 'string', demandOption: true, describe: 'domid or name' })
            .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'descriptor file to write' })
            .option('memory', { alias: 'm', type: 'string', describe: 'also write a full memory image (for eager restore)' }),
        async (argv) => {
          await withXenSession(async (xc, xs) => {
            const domid = resolveDomain(xc, xs, argv.domain);
            const r = await captureDescriptor(xc, xs, domid, { memoryImage: argv.memory, progress });
            const bytes = encodeDescriptor(r.descriptor);
            const tmp = `${argv.output}.tmp-${process.pid}`;
            try {
              writeFileSync(tmp, bytes);
              renameSync(tmp, argv.output);
            } catch (e) {
              rmSync(tmp, { force: true });
              if (argv.memory) rmSync(argv.memory, { force: true });
              throw e;
            }
            const summary = { domid, descriptor: argv.output, bytes: bytes.length, memoryImage: argv.memory ?? null, imagePages: r.imagePages ?? 0, pauseMs: r.pauseMs };
            if (argv.json) printJson(summary);
            else console.log(`saved domain ${domid} to ${argv.output} (${bytes.length} bytes${argv.memory ? `, memory image ${argv.memory}` : ''}); parent stopped ${r.pauseMs} ms`);
          });
        },
      )
      .command(
        'inspect <file>',
        'Check a descriptor file and show what it holds',
        (a) => a.positional('file', { type: 'string', demandOption: true }),
        (argv) => {
          const { descriptor, bytes } = readDescriptor(argv.file);
          if (argv.json) {
            printJson({
              bytes,
              meta: descriptor.meta,
              hvmContextBytes: descriptor.hvmContext.length,
              params: Object.fromEntries(descriptor.params.map(([i, v]) => [i, `0x${v.toString(16)}`])),
              cpuidLeaves: descriptor.cpuid.length / 24,
              msrs: descriptor.msrs.length / 16,
              memoryMap: descriptor.memoryMap,
              specialPages: descriptor.specialPages.map((p) => ({ param: p.param, gfn: p.gfn })),
            });
          } else {
            console.log(describeDescriptor(descriptor, bytes).join('\n'));
          }
        },
      )
      .command(
        'restore <file>',
        'Start a new domain from a descriptor and its memory image on this host',
        (a) =>
          a
            .positional('file', { type: 'string', demandOption: true })
            .option('memory', { alias: 'm', type: 'string', demandOption: true, describe: 'the memory image saved with the descriptor' })
            .option('name', { type: 'string', describe: 'name of the new domain (default <parent>-restored-<vmid>)' })
            .option('vmid', { type: 'number', default: 1, describe: 'the clone id the guest reads from xenstore (snowflock/vmid)' })
            .option('paused', { type: 'boolean', default: false, describe: 'leave the domain paused' }),
        async (argv) => {
          const { descriptor } = readDescriptor(argv.file);
          await withXenSession(async (xc, xs) => {
            const r = await restoreDescriptor(xc, xs, descriptor, {
              memoryImage: argv.memory,
              vmid: argv.vmid,
              name: argv.name ?? `${descriptor.meta.source.name}-restored-${argv.vmid}`,
              start: !argv.paused,
            });
            if (argv.json) printJson(r);
            else console.log(`domain ${r.domid} (${r.name}) started from ${argv.file}, vmid ${r.vmid}`);
          });
        },
      )
      .demandCommand(1, 'say which: save, inspect or restore'),
  );
}
