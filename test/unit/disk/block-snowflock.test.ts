// The block-snowflock hotplug script (scripts/xen/block-snowflock) with a fake environment:
// xenstore-read/-write/-rm over a directory, and a stand-in for `snowflock` that records its
// arguments. Run by the system's sh and, where it is installed, by busybox's (the test box's dom0).
import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { repoRoot } from '../../../lib/testbox/paths.js';

const SCRIPT = join(repoRoot(), 'scripts/xen/block-snowflock');
const BACK = '/local/domain/0/backend/vbd/5/51712';
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const FAKE_XS = `#!/bin/sh
# xenstore over the directory $XS (a node's value in the file of its path); a relative path is
# dom0's, as libxl's XENBUS_PATH ("backend/vbd/5/51712") is
abs() { case $1 in /*) echo "$XS$1" ;; *) echo "$XS/local/domain/0/$1" ;; esac; }
case $(basename "$0") in
  xenstore-read) f=$(abs "$1"); [ -f "$f" ] || { echo "couldn't read path $1" >&2; exit 1; }; cat "$f" ;;
  xenstore-write) while [ $# -ge 2 ]; do f=$(abs "$1"); mkdir -p "$(dirname "$f")"; printf %s "$2" > "$f"; shift 2; done ;;
  xenstore-rm) rm -rf "$(abs "$1")" ;;
esac
`;
const FAKE_SNOWFLOCK = `#!/bin/sh
echo "$*" >> "$CALLS"
[ -n "\${FAIL:-}" ] && { echo "DiskError: $FAIL" >&2; exit 1; }
case $2 in
  attach-parent) echo "family deb: storage daemon 42 started"; echo "device=/dev/nbd3 physical-device=2b:30 export=$6/$8" ;;
  detach) echo "$3 detached" ;;
esac
`;

function env(params: string | null, extra: Record<string, string> = {}) {
  const root = mkdtempSync(join(tmpdir(), 'sf-hotplug-'));
  dirs.push(root);
  const bin = join(root, 'bin');
  mkdirSync(bin);
  for (const n of ['xenstore-read', 'xenstore-write', 'xenstore-rm']) writeFileSync(join(bin, n), FAKE_XS, { mode: 0o755 });
  writeFileSync(join(bin, 'snowflock'), FAKE_SNOWFLOCK, { mode: 0o755 });
  const xs = join(root, 'xs');
  const node = (path: string, value: string) => {
    mkdirSync(dirname(join(xs, path)), { recursive: true });
    writeFileSync(join(xs, path), value);
  };
  if (params !== null) node(`${BACK}/params`, params);
  const calls = join(root, 'calls');
  const read = (path: string) => (existsSync(join(xs, path)) ? readFileSync(join(xs, path), 'utf8') : null);
  const run = (shell: string[], command: string, more: Record<string, string> = {}) => spawnSync(shell[0]!, [...shell.slice(1), SCRIPT, command], {
    encoding: 'utf8',
    // as libxl sets them (libxl_linux.c): the backend path relative to dom0's home
    env: { PATH: `${bin}:/usr/bin:/bin`, XS: xs, CALLS: calls, XENBUS_PATH: BACK.replace('/local/domain/0/', ''), XENBUS_TYPE: 'vbd', XENBUS_BASE_PATH: 'backend', script: '/etc/xen/scripts/block-snowflock', ...extra, ...more },
  });
  return { run, read, node, calls: () => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []) };
}

const shells: string[][] = [['sh']];
if (spawnSync('busybox', ['true']).status === 0) shells.push(['busybox', 'sh']);

describe.each(shells.map((s) => [s.join(' '), s] as const))('block-snowflock under %s', (_name, shell) => {
  it('add: puts the image into the family, connects it and tells blkback the device', () => {
    const e = env('deb:deb67/xvda:/dev/vda');
    const r = e.run(shell, 'add');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(e.calls()).toEqual(['disk attach-parent --family deb --vm deb67 --disk xvda --image /dev/vda']);
    expect(e.read(`${BACK}/physical-device`)).toBe('2b:30');
    expect(e.read(`${BACK}/physical-device-path`)).toBe('/dev/nbd3');
    expect(e.read(`${BACK}/snowflock-disk`)).toBe('deb:deb67/xvda');
    expect(e.read(`${BACK}/hotplug-status`)).toBe('connected');
  });

  it('add without an image: the family holds the disk already', () => {
    const e = env('deb:deb67/xvdb');
    expect(e.run(shell, 'add').status).toBe(0);
    expect(e.calls()).toEqual(['disk attach-parent --family deb --vm deb67 --disk xvdb']);
  });

  it('an image path may hold colons', () => {
    const e = env('deb:deb67/xvda:/srv/img:2024/a.qcow2');
    expect(e.run(shell, 'add').status).toBe(0);
    expect(e.calls()).toEqual(['disk attach-parent --family deb --vm deb67 --disk xvda --image /srv/img:2024/a.qcow2']);
  });

  it.each([
    ['deb67/xvda', /is not FAMILY:VM\/DISK\[:IMAGE\]/],
    ['deb:deb67', /is not FAMILY:VM\/DISK\[:IMAGE\]/],
    ['deb:deb67/xvda/x:/dev/vda', /is not FAMILY:VM\/DISK\[:IMAGE\]/],
    ['-deb:deb67/xvda', /bad family "-deb"/],
    ['deb:a b/xvda', /bad VM "a b"/],
    ['deb:deb67/$(reboot):/dev/vda', /bad disk "\$\(reboot\)"/],
    [`deb:${'v'.repeat(65)}/xvda`, /longer than 64/],
    ['deb:deb67/xvda:relative.img', /is not an absolute path/],
    ['deb:deb67/xvda:/srv/../etc/shadow', /must not contain \.\./],
  ])('refuses target %s, naming it, and runs nothing', (target, why) => {
    const e = env(target);
    const r = e.run(shell, 'add');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(why);
    expect(e.calls()).toEqual([]);
    expect(e.read(`${BACK}/hotplug-status`)).toBe('error');
    expect(e.read(`${BACK}/hotplug-error`)).toMatch(why);
    expect(e.read(`${BACK}/physical-device`)).toBeNull();
  });

  it('a failed attach is reported with snowflock\'s words', () => {
    const e = env('deb:deb67/xvda:/dev/vda', { FAIL: 'every /dev/nbd device is in use' });
    const r = e.run(shell, 'add');
    expect(r.status).toBe(1);
    expect(e.read(`${BACK}/hotplug-error`)).toMatch(/attaching deb:deb67\/xvda: DiskError: every \/dev\/nbd device is in use/);
    expect(e.read(`${BACK}/physical-device`)).toBeNull();
  });

  it('remove: disconnects the device and takes the disk out of its family', () => {
    const e = env('deb:deb67/xvda:/dev/vda');
    expect(e.run(shell, 'add').status).toBe(0);
    const r = e.run(shell, 'remove');
    expect(r.status).toBe(0);
    expect(e.calls().at(-1)).toBe('disk detach /dev/nbd3 --family deb --vm deb67');
    expect(e.read(`${BACK}/hotplug-status`)).toBeNull();
  });

  it('remove of a disk never attached does nothing; other commands and a missing XENBUS_PATH are refused', () => {
    const e = env('deb:deb67/xvda:/dev/vda');
    expect(e.run(shell, 'remove').status).toBe(0);
    expect(e.calls()).toEqual([]);
    expect(e.run(shell, 'online').stderr).toMatch(/unknown command "online"/);
    expect(e.run(shell, 'add', { XENBUS_PATH: '' }).stderr).toMatch(/XENBUS_PATH is not set/);
    e.node(`${BACK}/physical-device-path`, '/dev/sda');
    expect(e.run(shell, 'remove').stderr).toMatch(/"\/dev\/sda" is not an nbd device/);
  });
});
