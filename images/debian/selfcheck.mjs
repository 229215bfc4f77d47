// The Debian guest checks itself: the guest library imports, libxenvchan loads through ffi-rs,
// and the tools the agent and the library run are there. One line, "SF-SELFCHECK ok ..." or
// "SF-SELFCHECK failed: ...", and exit code 0 or 1. In /opt/snowflock of the image; run by
// test/host/50.debian-image (chroot, and a QEMU boot of the image) or in a guest under Xen with
// sf.workload=node sf.program=selfcheck.mjs.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const problems = [];
const facts = [`node=${process.version}`];
try {
  const api = await import('./dist/lib/api/index.js');
  for (const fn of ['sf_request_ticket', 'sf_clone', 'sf_exit', 'sf_join', 'sf_kill']) {
    if (typeof api[fn] !== 'function') problems.push(`the guest library has no ${fn}`);
  }
} catch (e) {
  problems.push(`the guest library does not import: ${e.message}`);
}
try {
  const { loadVchanLib } = await import('./dist/lib/api/vchan-lib.js');
  loadVchanLib();
  facts.push('vchan=loaded');
} catch (e) {
  problems.push(`libxenvchan: ${e.message}`);
}
for (const tool of ['xenstore-read', 'ip', 'poweroff', 'sf-memtest', 'sf-clone']) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: '/bin:/usr/bin' }, stdio: 'ignore' });
  } catch {
    problems.push(`${tool} is not on the agent's PATH (/bin:/usr/bin)`);
  }
}
try {
  facts.push(`image=${readFileSync('/etc/snowflock-image', 'utf8').match(/^key=(\S+)/m)?.[1]}`);
} catch {
  problems.push('no /etc/snowflock-image');
}
if (problems.length) {
  console.log(`SF-SELFCHECK failed: ${problems.join('; ')}`);
  process.exit(1);
}
console.log(`SF-SELFCHECK ok ${facts.join(' ')}`);
