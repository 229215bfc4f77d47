// A clone's vifs held off the bridge until the guest library says the clone has moved off the
// parent's address, on a real Linux bridge: veths named like Xen vifs stand in for the netdevs
// xen-netback makes, and xenstore is a map.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { plugCloneNics, releaseCloneNics, writeCloneNics, type NicRecord } from '../../lib/xen/clone-nic.js';
import { memoryStore } from '../memory-xenstore.js';

const isRoot = process.getuid?.() === 0;
const bridge = `sfhold${process.pid % 100000}`;
const held = 7000 + (process.pid % 900);
const direct = held + 1;
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
const masterOf = (dev: string) => (existsSync(`/sys/class/net/${dev}/master`) ? basename(readlinkSync(`/sys/class/net/${dev}/master`)) : null);
const isUp = (dev: string) => (ip('-o', 'link', 'show', 'dev', dev).toString().match(/<([^>]*)>/)?.[1] ?? '').split(',').includes('UP');

describe.skipIf(!isRoot)('a clone\'s vifs held off the bridge (real bridge, veths as vifs)', () => {
  beforeAll(() => {
    ip('link', 'add', bridge, 'type', 'bridge');
    for (const domid of [held, direct]) ip('link', 'add', `vif${domid}.0`, 'type', 'veth', 'peer', 'name', `sfpeer${domid}`);
  });
  afterAll(() => {
    for (const domid of [held, direct]) ipQuietly('link', 'del', `vif${domid}.0`);
    ipQuietly('link', 'del', bridge);
  });

  const nics: NicRecord[] = [{ devid: 0, mac: '00:16:3e:00:00:01', bridge }];

  it('a held vif is up but on no bridge until released; release is once', async () => {
    const xs = memoryStore();
    writeCloneNics(xs, held, nics);
    await plugCloneNics(xs, held, nics, { hold: true, timeoutMs: 1000 });
    expect(masterOf(`vif${held}.0`)).toBeNull();
    expect(isUp(`vif${held}.0`)).toBe(true);
    expect(xs.read(`/local/domain/0/backend/vif/${held}/0/hotplug-status`)).toBe('connected');

    expect(await releaseCloneNics(xs, held)).toEqual([`vif${held}.0`]);
    expect(masterOf(`vif${held}.0`)).toBe(bridge);
    expect(await releaseCloneNics(xs, held)).toEqual([]);
  });

  it('without hold the vif joins at once, and there is nothing to release', async () => {
    const xs = memoryStore();
    writeCloneNics(xs, direct, nics);
    await plugCloneNics(xs, direct, nics, { timeoutMs: 1000 });
    expect(masterOf(`vif${direct}.0`)).toBe(bridge);
    expect(await releaseCloneNics(xs, direct)).toEqual([]);
  });

  it('a domain with no vif backend releases nothing', async () => {
    expect(await releaseCloneNics(memoryStore(), held + 2)).toEqual([]);
  });
});

function ipQuietly(...args: string[]): void {
  try {
    ip(...args);
  } catch {
    /* already gone */
  }
}
