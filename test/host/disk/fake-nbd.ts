// A stand-in for nbd-client (this machine's kernel has no nbd module) for the fork path's disk tests.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NbdHost } from '../../../lib/disk/nbd-attach.js';

const MiB = 1 << 20;

/** A fake /sys/block with free nbd0..nbd3; nbd-client "connects" (marks the device busy) unless `failing`. */
export function fakeNbd(root: string, failing = false): NbdHost & { calls: string[][] } {
  const sys = join(root, 'sys');
  for (let i = 0; i < 4; i++) {
    mkdirSync(join(sys, `nbd${i}`), { recursive: true });
    writeFileSync(join(sys, `nbd${i}`, 'dev'), `43:${i * 16}`);
    writeFileSync(join(sys, `nbd${i}`, 'size'), '0');
  }
  const calls: string[][] = [];
  return {
    calls, sysBlock: sys, dev: '/dev',
    run: async (_file, args) => {
      calls.push(args);
      const n = (args[0] === '-d' ? args[1] : args[2])!.replace('/dev/', '');
      if (args[0] === '-d') {
        rmSync(join(sys, n, 'pid'), { force: true });
        writeFileSync(join(sys, n, 'size'), '0');
        return { stdout: '', stderr: '' };
      }
      if (failing) throw Object.assign(new Error('failed'), { code: 1, stderr: 'Error: Failed to setup device, check dmesg\nExiting.', stdout: '' });
      writeFileSync(join(sys, n, 'pid'), '1');
      writeFileSync(join(sys, n, 'size'), String(16 * MiB));
      return { stdout: '', stderr: '' };
    },
  };
}
