// dom0's nbd attach without a kernel: a fake /sys/block and a stand-in for nbd-client that
// answers with nbd-client 3.24's own words (as seen against QEMU's NBD server).
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachNbd, detachNbd, freeNbdDevices, nbdClientArgv, nbdClientError, nbdFailureKind, physicalDevice, type NbdHost } from '../../../lib/disk/nbd-attach.js';
import { DiskError } from '../../../lib/disk/errors.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** /sys/block with nbd0..nbd(n-1) (minors 16 apart, as with max_part=16); `busy` have a pid and a size. */
function fakeHost(n: number, busy: number[], answer: (args: string[]) => { stderr?: string; fail?: boolean; enoent?: boolean }): NbdHost & { calls: string[][] } {
  const root = mkdtempSync(join(tmpdir(), 'sf-nbd-'));
  dirs.push(root);
  for (let i = 0; i < n; i++) {
    const d = join(root, `nbd${i}`);
    mkdirSync(d);
    writeFileSync(join(d, 'dev'), `43:${i * 16}\n`);
    writeFileSync(join(d, 'size'), busy.includes(i) ? '2097152\n' : '0\n');
    if (busy.includes(i)) writeFileSync(join(d, 'pid'), '123\n');
  }
  mkdirSync(join(root, 'sda'));
  const calls: string[][] = [];
  return {
    calls,
    sysBlock: root,
    dev: '/dev',
    run: async (file, args) => {
      calls.push([file, ...args]);
      const a = answer(args);
      if (a.enoent) throw Object.assign(new Error('spawn nbd-client ENOENT'), { code: 'ENOENT' });
      if (a.fail) throw Object.assign(new Error('Command failed'), { code: 1, stdout: '', stderr: a.stderr ?? '' });
      return { stdout: 'Negotiation: ..size = 1024MB\n', stderr: '' };
    },
  };
}

describe('nbd-client for a family export', () => {
  it('connects over the unix socket by export name', () => {
    expect(nbdClientArgv({ socket: '/s/nbd.sock', device: '/dev/nbd3', export: 'web/xvda' })).toEqual(['-unix', '/s/nbd.sock', '/dev/nbd3', '-N', 'web/xvda']);
  });

  it('reads nbd-client\'s error lines', () => {
    const unknown = "Negotiation: ..Error: Unknown error returned by server. Server said: export 'bad' not present\nExiting.";
    expect(nbdClientError(unknown)).toBe("Unknown error returned by server. Server said: export 'bad' not present");
    expect(nbdFailureKind(nbdClientError(unknown))).toBe('unknown-export');
    const noModule = "Error: Couldn't resolve the nbd netlink family, make sure the nbd module is loaded and your nbd driver supports the netlink interface.\n\nExiting.";
    expect(nbdFailureKind(nbdClientError(noModule))).toBe('no-module');
    expect(nbdFailureKind(nbdClientError('Error: CONNECT failed\n'))).toBe('unreachable');
    expect(nbdFailureKind(nbdClientError('Error: Failed to setup device, check dmesg\n'))).toBe('busy');
    expect(nbdClientError('', 'something else\nlast words')).toBe('last words');
  });

  it('finds free devices in order, and block numbers as libxl writes them', () => {
    const host = fakeHost(12, [0, 2], () => ({}));
    expect(freeNbdDevices(host)).toEqual(['/dev/nbd1', '/dev/nbd3', '/dev/nbd4', '/dev/nbd5', '/dev/nbd6', '/dev/nbd7', '/dev/nbd8', '/dev/nbd9', '/dev/nbd10', '/dev/nbd11']);
    expect(physicalDevice(host, '/dev/nbd1')).toBe('2b:10');
    expect(physicalDevice(host, '/dev/nbd10')).toBe('2b:a0');
  });

  it('attaches to the first free device', async () => {
    const host = fakeHost(4, [0], () => ({}));
    const a = await attachNbd({ socket: '/f/run/nbd.sock', export: 'web/xvda', host });
    expect(a).toEqual({ device: '/dev/nbd1', physicalDevice: '2b:10', socket: '/f/run/nbd.sock', export: 'web/xvda' });
    expect(host.calls).toEqual([['nbd-client', '-unix', '/f/run/nbd.sock', '/dev/nbd1', '-N', 'web/xvda']]);
  });

  it('skips a device taken meanwhile, cleaning up after the failed try', async () => {
    const host = fakeHost(4, [], (args) => (args[2] === '/dev/nbd0' ? { fail: true, stderr: 'Error: Failed to setup device, check dmesg\nExiting.' } : {}));
    const a = await attachNbd({ socket: '/s', export: 'c1/xvda', host });
    expect(a.device).toBe('/dev/nbd1');
    expect(host.calls.map((c) => c.slice(1, 4).join(' '))).toEqual(['-unix /s /dev/nbd0', '-d /dev/nbd0', '-unix /s /dev/nbd1']);
  });

  it('names the device and the export when the export is unknown, and leaves the device free', async () => {
    const host = fakeHost(2, [], (args) => (args[0] === '-unix' ? { fail: true, stderr: "Negotiation: ..Error: Unknown error returned by server. Server said: export 'nope/xvda' not present\nExiting." } : {}));
    const e = await attachNbd({ socket: '/s', export: 'nope/xvda', host }).catch((x: DiskError) => x);
    expect(e).toBeInstanceOf(DiskError);
    expect((e as DiskError).code).toBe('unknown-export');
    expect((e as DiskError).message).toBe("attaching export nope/xvda of /s to /dev/nbd0: nbd-client: Unknown error returned by server. Server said: export 'nope/xvda' not present");
    expect(host.calls.at(-1)).toEqual(['nbd-client', '-d', '/dev/nbd0']);
  });

  it('says what is missing: the module, free devices, nbd-client itself', async () => {
    const none = fakeHost(0, [], () => ({}));
    await expect(attachNbd({ socket: '/s', export: 'a/b', host: none })).rejects.toThrow(/this dom0 has no nbd devices \(load the nbd module/);
    const full = fakeHost(2, [0, 1], () => ({}));
    await expect(attachNbd({ socket: '/s', export: 'a/b', host: full })).rejects.toThrow(/every \/dev\/nbd device is in use/);
    const noClient = fakeHost(1, [], () => ({ enoent: true }));
    await expect(attachNbd({ socket: '/s', export: 'a/b', host: noClient })).rejects.toThrow(/nbd-client is not installed \(apt-get install nbd-client\)/);
  });

  it('detaches with -d and refuses what is not an nbd device', async () => {
    const host = fakeHost(1, [0], () => ({}));
    await detachNbd('/dev/nbd0', { host });
    expect(host.calls).toEqual([['nbd-client', '-d', '/dev/nbd0']]);
    await expect(detachNbd('/dev/sda', { host })).rejects.toThrow(/not an nbd device/);
    const failing = fakeHost(1, [0], () => ({ fail: true, stderr: "Error: Couldn't resolve the nbd netlink family\n" }));
    await expect(detachNbd('/dev/nbd0', { host: failing, export: 'web/xvda' })).rejects.toThrow("detaching /dev/nbd0 (export web/xvda): nbd-client -d: Couldn't resolve the nbd netlink family");
  });
});
