// The Debian guest (images/debian/build.sh) checked without Xen: its ext4 image is clean, its
// init and the guest agent are in place, Node runs the guest library inside it (chroot), and the
// image boots under plain QEMU through its own initramfs, switch_root, sf-init and the agent,
// with the disk on virtio instead of xen-blkfront (the initramfs gets the virtio modules as an
// appended cpio layer, as build-node.sh appends its layer). Skipped until the image is built.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, copyFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { cacheDir, testboxDir } from '../../lib/testbox/paths.js';

const root = join(import.meta.dirname, '..', '..');
const dir = join(cacheDir(), 'images', 'debian');
const image = join(dir, 'xvda.ext4');
const initrd = join(dir, 'initrd.cpio');
const kernel = join(testboxDir(), 'vmlinux');
const isRoot = process.getuid?.() === 0;
const built = existsSync(image) && existsSync(initrd);
const hasQemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64']).status === 0;

/** Runs a command in the unpacked image with /proc and /dev, in a mount namespace of its own. */
function inImage(rootDir: string, ...cmd: string[]) {
  const script = 'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && shift && exec chroot "$@"';
  return spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', rootDir, rootDir, ...cmd], {
    encoding: 'utf8', timeout: 60_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
}

describe.skipIf(!built || !isRoot)('Debian guest image (images/debian)', () => {
  let unpacked: string;
  beforeAll(() => {
    unpacked = mkdtempSync(join(tmpdir(), 'sf-debian-'));
    // debugfs reads the filesystem itself: no loop device, no mount.
    execFileSync('debugfs', ['-R', `rdump / ${unpacked}`, image], { stdio: 'pipe' });
  });
  afterAll(() => rmSync(unpacked, { recursive: true, force: true }));

  it('is a clean ext4 filesystem (e2fsck -fn) and a sparse file', () => {
    const r = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const st = statSync(image);
    expect(st.size).toBeLessThanOrEqual(1024 * 1024 * 1024);
    expect(st.blocks * 512).toBeLessThan(st.size / 2);
  });

  it('has an executable /sbin/sf-init that the image\'s sh accepts, and the repository\'s agent', () => {
    const init = join(unpacked, 'sbin', 'sf-init');
    expect(statSync(init).mode & 0o111, '/sbin/sf-init is not executable').toBe(0o111);
    expect(readFileSync(init, 'utf8')).toBe(readFileSync(join(root, 'images', 'debian', 'sf-init'), 'utf8'));
    const agent = join(unpacked, 'usr', 'local', 'sbin', 'sf-agent');
    expect(statSync(agent).mode & 0o111, 'the agent is not executable').toBe(0o111);
    expect(readFileSync(agent, 'utf8'), 'the image\'s agent is not images/testguest/agent.sh: run images/debian/build.sh')
      .toBe(readFileSync(join(root, 'images', 'testguest', 'agent.sh'), 'utf8'));
    const r = inImage(unpacked, '/bin/sh', '-n', '/sbin/sf-init', '/usr/local/sbin/sf-agent');
    expect(r.status, r.stderr).toBe(0);
  });

  it('runs Node with the guest library, libxenvchan and the agent\'s tools inside it (chroot)', () => {
    const r = inImage(unpacked, '/bin/sh', '-c', 'cd /opt/snowflock && exec /usr/bin/node selfcheck.mjs');
    expect(r.stdout + r.stderr).toMatch(/^SF-SELFCHECK ok node=v\d+\.\d+\.\d+ vchan=loaded image=[0-9a-f]{16}\n$/);
    expect(r.status).toBe(0);
    const status = inImage(unpacked, '/usr/bin/sf-status', '--help');
    expect(status.stdout + status.stderr).toMatch(/usage: sf <command>/);
  });

  it('has an initramfs with busybox, its init and the modules that reach xvda', () => {
    const list = execFileSync('cpio', ['-it', '--quiet', '-F', initrd], { encoding: 'utf8' }).split('\n');
    for (const f of ['init', 'bin/busybox', 'bin/switch_root']) expect(list).toContain(f);
    const modules = list.filter((f) => f.startsWith('lib/modules/')).map((f) => basename(f));
    for (const m of ['ext4', 'jbd2', 'xen-blkfront', 'xen-netfront', 'xen-evtchn', 'xen-gntdev']) {
      expect(modules.some((f) => f.endsWith(`-${m}.ko`)), `${m}.ko missing`).toBe(true);
    }
    const at = (m: string) => modules.findIndex((f) => f.endsWith(`-${m}.ko`));
    expect(at('jbd2')).toBeLessThan(at('ext4'));
    const init = execFileSync('cpio', ['-i', '--quiet', '--to-stdout', '-F', initrd, 'init']);
    const r = spawnSync('/bin/busybox', ['sh', '-n'], { input: init, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  // Plain QEMU (TCG), no Xen: the Xen front ends fail to load there (printed, not fatal) and
  // the disk is /dev/vda. What it proves is the rest of the path a Xen boot takes.
  it.skipIf(!hasQemu || !existsSync(kernel))('boots under QEMU: initramfs, switch_root, sf-init, the agent, Node', async () => {
    const work = mkdtempSync(join(tmpdir(), 'sf-debian-boot-'));
    try {
      const kver = readFileSync(join(testboxDir(), 'kver'), 'utf8').trim();
      const kmod = join(testboxDir(), 'root', 'lib', 'modules', kver, 'kernel');
      mkdirSync(join(work, 'layer', 'lib', 'modules'), { recursive: true });
      ['virtio/virtio_ring', 'virtio/virtio', 'virtio/virtio_pci_modern_dev', 'virtio/virtio_pci_legacy_dev', 'virtio/virtio_pci']
        .map((m) => `drivers/${m}`).concat('drivers/block/virtio_blk')
        .forEach((m, i) => copyFileSync(join(kmod, `${m}.ko`), join(work, 'layer', 'lib', 'modules', `0${i + 1}-${basename(m)}.ko`)));
      const layer = execFileSync('sh', ['-c', 'cd layer && find . | cpio -o -H newc --quiet'], { cwd: work });
      const both = join(work, 'initrd.cpio');
      execFileSync('sh', ['-c', `cat "$0" > "$1" && cat >> "$1"`, initrd, both], { input: layer });
      const log = await bootQemu(kernel, both, image, 'sf.workload=node sf.program=selfcheck.mjs', /SF-AGENT selfcheck\.mjs exited rc=\d+/, 240_000);
      expect(log).toMatch(/SF-INITRD root \/dev\/vda \(ext4, rw\) init=\/sbin\/sf-init/);
      expect(log).toMatch(/SF-INIT debian 12 kernel=\S+ root=\/dev\/vda image=[0-9a-f]{16}/);
      expect(log).toMatch(/SF-AGENT up workload=node/);
      expect(log).toMatch(/SF-SELFCHECK ok node=v\d+/);
      expect(log).toMatch(/SF-AGENT selfcheck\.mjs exited rc=0 vmid=0/);
      expect(log).not.toMatch(/not found|SF-INIT error|SF-INITRD error/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 300_000);
});

/** QEMU with the image as a throwaway virtio disk (snapshot=on); resolves with the console once `done` appears. */
function bootQemu(kernel: string, initrd: string, disk: string, cmdline: string, done: RegExp, timeoutMs: number): Promise<string> {
  const args = ['-accel', 'tcg', '-cpu', 'max', '-m', '512', '-display', 'none', '-nodefaults', '-no-reboot', '-serial', 'stdio', '-monitor', 'none',
    '-kernel', kernel, '-initrd', initrd, '-drive', `file=${disk},if=virtio,format=raw,snapshot=on`,
    '-append', `console=ttyS0 quiet noxsave root=/dev/vda ${cmdline}`];
  return new Promise((resolve, reject) => {
    const qemu = spawn('timeout', [String(Math.ceil(timeoutMs / 1000)), 'qemu-system-x86_64', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (b: Buffer) => {
      out += b.toString();
      if (done.test(out)) {
        qemu.kill('SIGTERM');
        resolve(out);
      }
    };
    qemu.stdout.on('data', onData);
    qemu.stderr.on('data', onData);
    qemu.on('error', reject);
    qemu.on('close', (code) => reject(new Error(`QEMU ended (exit ${code}) before ${done}; console:\n${out.slice(-3000)}`)));
  });
}
