// Gets every artifact a test box run needs, through the scripts in scripts/testbox and
// images/. fetch.sh and build-xen.sh cache their work and say themselves whether they
// download, build or reuse it; the guest images and the dom0 initramfs are rebuilt every time.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { artifacts, repoRoot, type XenFlavour } from './paths.js';

export type Progress = (message: string) => void;

function runScript(script: string, args: string[], progress: Progress): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(repoRoot(), script), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000);
      for (const line of chunk.toString().split('\n')) if (line.startsWith('[testbox]')) progress(line.slice(10));
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${script} failed (exit ${code}):\n${tail.trim()}`));
    });
  });
}

/** `debianDisk`: also the Debian guest and dom0's disk path (docs/disks.md); off, everything is as before. */
export async function prepareArtifacts(flavour: XenFlavour, progress: Progress, opts: { dom0: boolean; debianDisk?: boolean }): Promise<void> {
  await runScript('scripts/testbox/fetch.sh', opts.debianDisk ? ['--disk'] : [], progress);
  if (flavour === 'custom') {
    await runScript('scripts/testbox/build-xen.sh', [], progress);
  }
  progress('building the test guest image');
  await runScript('images/testguest/build.sh', [], progress);
  if (opts.dom0) {
    progress('building the Node test guest image (guest library, vchan)');
    await runScript('images/testguest/build-node.sh', [], progress);
    if (opts.debianDisk) {
      progress('building the Debian guest (root disk and initramfs; cached)');
      await runScript('images/debian/build.sh', [], progress);
    }
    progress('building the dom0 initramfs (project, addon, test suite, guest)');
    await runScript('scripts/testbox/build-dom0.sh', [artifacts.dom0Initrd({ debianDisk: opts.debianDisk }), ...(opts.debianDisk ? ['--disk'] : [])], progress);
  }
}
