// Doctor checks of the host around Xen: kernel features the project uses and the tools
// the test box needs.
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { check, type Check } from './check.js';

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || (r.error?.message ?? '') };
}

export function userfaultfdCheck(): Check {
  // The sysctl exists exactly when the kernel was built with CONFIG_USERFAULTFD.
  if (!existsSync('/proc/sys/vm/unprivileged_userfaultfd')) {
    return check('host.userfaultfd', 'host', 'userfaultfd', 'warn', 'kernel without CONFIG_USERFAULTFD');
  }
  const unpriv = readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim();
  const dev = existsSync('/dev/userfaultfd') ? ', /dev/userfaultfd present' : '';
  return check('host.userfaultfd', 'host', 'userfaultfd', 'ok', `available (unprivileged=${unpriv}${dev})`);
}

export function netnsCheck(): Check {
  if (process.getuid?.() !== 0) return check('host.netns', 'host', 'network namespaces', 'skip', 'needs root to probe');
  const name = `sfdoctor${process.pid}`;
  const add = run('ip', ['netns', 'add', name]);
  if (!add.ok) return check('host.netns', 'host', 'network namespaces', 'fail', `ip netns add: ${add.out}`);
  run('ip', ['netns', 'delete', name]);
  return check('host.netns', 'host', 'network namespaces', 'ok', 'ip netns add/delete works');
}

export function qemuCheck(): Check {
  const v = run('qemu-system-x86_64', ['--version']);
  if (!v.ok) return check('testbox.qemu', 'testbox', 'QEMU for the test box', 'warn', 'qemu-system-x86_64 not installed (apt-get install qemu-system-x86)');
  const first = v.out.split('\n')[0] ?? '';
  return check('testbox.qemu', 'testbox', 'QEMU for the test box', 'ok', `${first}; Xen runs under TCG (-cpu max,-smap,-rdtscp)`);
}

export function hostChecks(): Check[] {
  return [userfaultfdCheck(), netnsCheck(), qemuCheck()];
}
