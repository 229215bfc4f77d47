// Clones are domains Xen's own toolstack manages: xl list -l, mem-set, vcpu-set,
// network-attach/detach and save/restore behave on a clone as on a domain xl created, and on
// the parent afterwards. A clone's memory limits are its parent's at the fork; a clone of a
// ballooned parent, and a clone of that clone, load every page, and Xen logs no over-allocation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon } from '../../lib/xen/native.js';
import { readConsole, waitForConsole } from '../../lib/xen/console.js';
import { destroyClone, type Restored } from '../../lib/descriptor/restore.js';
import { resumeSuspended, suspendDomain } from '../../lib/xen/suspend.js';
import type { LazyCloneResult } from '../../lib/clone/lazy.js';
import { processAlive } from '../../lib/memtap/spawn.js';
import { destroyQuietly, domainIds, env, GUEST_BRIDGE, memPagingSkip, openXen, startTestGuest, waitUntil } from './helpers.js';

const xc = openXen();
const xs = new (loadAddon().XenStore)();
const work = mkdtempSync(join(tmpdir(), 'sf-xl-'));
const parentName = `sf-xl-${process.pid}`;
let parent: number | undefined;
let onDemandSkip: string | false = false;
/** every domain and memserver this file made, for after() */
const made: { domid: number; uuid?: string }[] = [];
const memservers: number[] = [];
const skipBox = env.box !== 1 ? 'single-host file runs on box 1' : false;

interface XlListed { domid: number; config: { c_info: { name: string; uuid: string }; b_info: { max_memkb: number; target_memkb: number; max_vcpus: number }; nics?: { mac?: string; devid?: number }[] } }

function xl(args: string[], timeout = 180_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('xl', args, { encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function xlOk(args: string[], timeout?: number): string {
  const r = xl(args, timeout);
  assert.equal(r.status, 0, `xl ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** xl save (`extra`: e.g. -c) of a guest; a failure says libxl's steps and why the guest did not suspend. */
async function xlSave(domid: number, name: string, file: string, extra: string[] = []): Promise<void> {
  const r = xl(['-vvv', 'save', ...extra, String(domid), file], 300_000);
  if (r.status === 0) return;
  const steps = r.stderr.split('\n').filter((l) => /libxl|xc:/.test(l)).slice(-25).join('\n');
  assert.fail(`xl save ${[...extra, domid].join(' ')} failed (${r.status}):\n${steps}\n${await blockedTasks(domid, name)}`);
}

/**
 * Why a guest did not suspend: its control node, its vCPUs, and its kernel's blocked tasks
 * (sysrq w prints them on its console), with the console's last lines as they are.
 */
async function blockedTasks(domid: number, name: string): Promise<string> {
  const control = xs.read(`/local/domain/${domid}/control/shutdown`);
  const vcpus = xl(['vcpu-list', String(domid)]).stdout.trim();
  const mark = readConsole(name).length;
  xl(['sysrq', String(domid), 'w']);
  await new Promise((r) => setTimeout(r, 5000));
  const after = readConsole(name).slice(mark).split('\n').filter((l) => !/^SF-COUNT \d+ vmid=\d+$/.test(l)).slice(-60).join('\n');
  const tail = readConsole(name).slice(0, mark).split('\n').slice(-25).join('\n');
  return `control/shutdown: ${JSON.stringify(control)}\n${vcpus}\n--- ${name}'s console before sysrq ---\n${tail}\n--- after sysrq w (blocked tasks) ---\n${after}`;
}

/** xl list -l as xl prints it, failing on libxl's "Fail to get domain configuration". */
function xlListLong(domid: number): XlListed {
  const r = xl(['list', '-l', String(domid)]);
  assert.equal(r.status, 0, `xl list -l ${domid}: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /Fail to get domain configuration|unable to retrieve/, `xl list -l ${domid} could not read the configuration`);
  const listed = JSON.parse(r.stdout) as XlListed[];
  assert.equal(listed.length, 1, `xl list -l ${domid} printed ${listed.length} domains`);
  return listed[0]!;
}

const cloneMemory = (domid: number) => (JSON.parse(snowflock(['list', '--json'])) as { domid: number; clone: { memory: string | null } | null }[])
  .find((d) => d.domid === domid)?.clone?.memory;

const memoryNode = (domid: number, node: 'static-max' | 'target') => Number(xs.read(`/local/domain/${domid}/memory/${node}`));

function snowflock(args: string[], timeout = 600_000): string {
  const r = spawnSync(process.execPath, ['dist/lib/cli/main.js', ...args], { encoding: 'utf8', timeout });
  assert.equal(r.status, 0, `snowflock ${args.join(' ')} failed: ${r.stdout} ${r.stderr}`);
  return r.stdout;
}

function cloneEager(domid: number): Restored {
  const r = JSON.parse(snowflock(['clone', String(domid), '-n', '1', '--memory', 'eager', '--json', '--workdir', work])) as { clones: Restored[] };
  made.push(...r.clones);
  return r.clones[0]!;
}

function cloneOnDemand(domid: number): LazyCloneResult {
  const r = JSON.parse(snowflock(['clone', String(domid), '-n', '1', '--json', '--state-dir', join(work, 'state')])) as LazyCloneResult;
  made.push(...r.clones);
  memservers.push(r.memserver.pid);
  return r;
}

const counts = (name: string, vmid: number) => [...readConsole(name).matchAll(new RegExp(`SF-COUNT (\\d+) vmid=${vmid}\\b`, 'g'))].map((m) => Number(m[1]));

/** The clone carries its own identity and the parent's memory limits in libxl's record. */
function assertXlKnows(c: Restored, p: number): void {
  const listed = xlListLong(c.domid);
  assert.equal(listed.config.c_info.name, c.name);
  assert.equal(listed.config.c_info.uuid, c.uuid);
  assert.equal(memoryNode(c.domid, 'static-max'), memoryNode(p, 'static-max'), 'static-max is the parent\'s');
  assert.equal(memoryNode(c.domid, 'target'), memoryNode(p, 'target'), 'the balloon target is the parent\'s');
  assert.equal(listed.config.b_info.max_memkb, memoryNode(p, 'static-max'));
  for (const [i, mac] of c.macs.entries()) assert.equal(listed.config.nics?.[i]?.mac, mac, `vif ${i} has the clone's MAC in libxl's record`);
}

/**
 * xl save, then xl restore: the clone ends here, and the restored domain (same name) continues
 * its count, resumed, not booted, with nothing wrong on its console; destroyed after.
 */
async function saveAndRestore(c: { domid: number; name: string; vmid: number }, file: string): Promise<void> {
  await xlSave(c.domid, c.name, file);
  assert.ok(statSync(file).size > 1 << 20, 'xl wrote the clone\'s memory');
  assert.ok(!domainIds(xc).includes(c.domid), 'xl save ended the clone');
  const atSave = Math.max(...counts(c.name, c.vmid));
  const consoleAtSave = readConsole(c.name).length;
  xlOk(['restore', file], 300_000);
  const domid = Number(xlOk(['domid', c.name]).trim());
  made.push({ domid });
  await waitForConsole(c.name, new RegExp(`SF-COUNT ${atSave + 2} vmid=`), 120_000);
  const after = readConsole(c.name).slice(consoleAtSave);
  assert.doesNotMatch(after, /SF-AGENT up/, 'the restored clone resumed; it did not boot');
  assert.doesNotMatch(after, /Oops|BUG:|Kernel panic/, 'the restored clone runs clean');
  xlListLong(domid);
  xlOk(['destroy', String(domid)]);
  rmSync(file);
}

before(async () => {
  if (skipBox) return;
  onDemandSkip = await memPagingSkip(xc);
  const vifs = existsSync(`/sys/class/net/${GUEST_BRIDGE}/bridge`) ? [`bridge=${GUEST_BRIDGE}`] : [];
  parent = await startTestGuest(parentName, 'pvh', '', 128, vifs);
  await waitForConsole(parentName, /SF-COUNT \d+ vmid=0/, 120_000, 2);
});

after(async () => {
  for (const c of made) await destroyClone(xc, xs, c.domid, c.uuid).catch(() => {});
  for (const pid of memservers) if (processAlive(pid)) process.kill(pid, 'SIGTERM');
  await destroyQuietly(xc, parent);
  xs.close();
  xc.close();
  rmSync(work, { recursive: true, force: true });
});

test('an eager clone is a domain xl manages: list -l, mem-set, vcpu-set, network-attach and -detach', { skip: skipBox }, async () => {
  const c = cloneEager(parent!);
  assertXlKnows(c, parent!);
  xlOk(['mem-set', String(c.domid), '100m']);
  assert.equal(memoryNode(c.domid, 'target'), 102400, 'xl mem-set set the clone\'s balloon target');
  assert.equal(xlListLong(c.domid).config.b_info.target_memkb, 102400);
  xlOk(['vcpu-set', String(c.domid), '1']);
  if (existsSync(`/sys/class/net/${GUEST_BRIDGE}/bridge`)) {
    const before = xlOk(['network-list', String(c.domid)]).trim().split('\n').length;
    xlOk(['network-attach', String(c.domid), `bridge=${GUEST_BRIDGE}`]);
    const attached = xlOk(['network-list', String(c.domid)]).trim().split('\n');
    assert.equal(attached.length, before + 1, `xl network-attach added a vif:\n${attached.join('\n')}`);
    const devid = attached.at(-1)!.trim().split(/\s+/)[0]!;
    xlOk(['network-detach', String(c.domid), devid]);
    await waitUntil('the attached vif gone', () => xlOk(['network-list', String(c.domid)]).trim().split('\n').length === before, 60_000);
  }
});

test('xl save and xl restore an eager clone: it runs on from where it was, as the same clone', { skip: skipBox }, async () => {
  const c = made.at(-1)! as Restored;
  await waitForConsole(c.name, new RegExp(`SF-COUNT \\d+ vmid=${c.vmid}`), 120_000, 1);
  await saveAndRestore(c, join(work, 'clone.xlsave'));
});

test('an on-demand clone: xl list -l and mem-set; snowflock settle makes it whole, and xl save and restore work without the memserver', { skip: skipBox || onDemandSkip }, async (t) => {
  if (onDemandSkip) return t.skip(onDemandSkip);
  const fork = cloneOnDemand(parent!);
  const c = fork.clones[0]!;
  assertXlKnows(c, parent!);
  xlOk(['mem-set', String(c.domid), '110m']);
  assert.equal(memoryNode(c.domid, 'target'), 112640);
  assert.equal(cloneMemory(c.domid), 'on-demand', 'snowflock list shows the clone\'s memory on demand');
  assert.ok(xc.domainInfo(c.domid).pagedPages > 0, 'the clone has pages it has not fetched');
  const settled = JSON.parse(snowflock(['settle', String(c.domid), '--json'])) as { domid: number; already: boolean; ms: number };
  t.diagnostic(`settled in ${settled.ms} ms`);
  assert.equal(settled.already, false);
  assert.equal(xc.domainInfo(c.domid).pagedPages, 0, 'no page is paged out');
  assert.equal(cloneMemory(c.domid), 'whole');
  await waitUntil('memtap gone from the clone', () => !processAlive(c.memtapPid), 30_000);
  assert.equal(JSON.parse(snowflock(['settle', String(c.domid), '--json'])).already, true, 'a second settle has nothing to do');
  // Whole, the clone needs nothing of the fork: it said goodbye, and the memserver of its
  // one-clone fork ended.
  await waitUntil('the memserver ended', () => !processAlive(fork.memserver.pid), 60_000);
  await waitForConsole(c.name, new RegExp(`SF-COUNT \\d+ vmid=${c.vmid}`), 120_000, 2);
  await saveAndRestore(c, join(work, 'settled.xlsave'));
});

test('xl save of an on-demand clone that was not settled: memtap holds it and loads every page first; the saved clone restores whole', { skip: skipBox || onDemandSkip }, async (t) => {
  if (onDemandSkip) return t.skip(onDemandSkip);
  const fork = cloneOnDemand(parent!);
  const c = fork.clones[0]!;
  await waitForConsole(c.name, new RegExp(`SF-COUNT \\d+ vmid=${c.vmid}`), 180_000, 2);
  assert.ok(xc.domainInfo(c.domid).pagedPages > 0, 'the clone has pages it has not fetched');
  // Xen's save records a paged-out frame as absent: without the hold the restored guest oopsed.
  await saveAndRestore(c, join(work, 'unsettled.xlsave'));
  await waitUntil('the memserver ended', () => !processAlive(fork.memserver.pid), 60_000);
});

test('a clone of a ballooned parent, and a clone of that clone, load every page; no over-allocation', { skip: skipBox || onDemandSkip }, async (t) => {
  if (onDemandSkip) return t.skip(onDemandSkip);
  xlOk(['mem-set', String(parent), '120m']);
  await waitUntil('the parent ballooned down', () => xc.domainInfo(parent!).totPages <= 30976, 120_000);
  const fork = cloneOnDemand(parent!);
  const c = fork.clones[0]!;
  assert.equal(memoryNode(c.domid, 'target'), 122880, 'the clone aims at the parent\'s ballooned target');
  await waitForConsole(c.name, new RegExp(`SF-COUNT \\d+ vmid=${c.vmid}`), 180_000, 2);
  // An eager clone of the on-demand clone reads every one of its pages through memtap.
  const grand = cloneEager(c.domid);
  await waitForConsole(grand.name, new RegExp(`SF-COUNT \\d+ vmid=${grand.vmid}`), 180_000, 2);
  const dmesg = xlOk(['dmesg']);
  assert.doesNotMatch(dmesg, /Over-allocation/, 'Xen logged no over-allocation');
  assert.equal(cloneMemory(c.domid), 'on-demand', 'no page failed to load');
  xlOk(['mem-set', String(parent), '128m']);
});

test('the descriptor CLI on Xen: save with a memory image, inspect, restore a running clone xl knows', { skip: skipBox }, async () => {
  const file = join(work, 'parent.sfd');
  const image = join(work, 'parent.img');
  snowflock(['descriptor', 'save', String(parent), '-o', file, '--memory', image]);
  const inspected = JSON.parse(snowflock(['descriptor', 'inspect', file, '--json'])) as { meta: { source: { name: string }; memory: { staticMaxKiB: number; targetKiB: number } } };
  assert.equal(inspected.meta.source.name, parentName);
  assert.equal(inspected.meta.memory.targetKiB, memoryNode(parent!, 'target'), 'the descriptor records the parent\'s balloon target');
  const name = `${parentName}-cli`;
  const restored = JSON.parse(snowflock(['descriptor', 'restore', file, '--memory', image, '--name', name, '--vmid', '7', '--json'])) as Restored;
  made.push(restored);
  await waitForConsole(name, /SF-COUNT \d+ vmid=7/, 120_000, 2);
  assert.equal(xlListLong(restored.domid).config.c_info.name, name);
  await destroyClone(xc, xs, restored.domid, restored.uuid);
  rmSync(image);
});

test('the parent\'s next suspend fires @releaseDomain: snowflock\'s resumes told xenstored (XS_RESUME), as xl save waits on that watch', { skip: skipBox }, async () => {
  // The forks and the descriptor save above suspended and resumed the parent. xenstored fires
  // @releaseDomain only when it sees a domain newly shut down; a resume it was not told of
  // leaves it thinking the parent is still down, and libxl's wait for the suspend times out.
  const watch = spawn('xenstore-watch', ['-n', '2', '@releaseDomain'], { stdio: ['ignore', 'pipe', 'pipe'] }); // its 1st event is the registration
  let out = '';
  watch.stdout.on('data', (d) => { out += d; });
  const exited = new Promise<boolean>((r) => watch.once('exit', () => r(true)));
  await waitUntil('xenstore-watch to register', () => out.includes('@releaseDomain'), 30_000);
  await suspendDomain(xc, xs, parent!);
  xc.pause(parent!); // as a capture holds it
  const fired = await Promise.race([exited, new Promise<boolean>((r) => setTimeout(() => r(false), 30_000))]);
  resumeSuspended(xc, xs, parent!);
  watch.kill();
  assert.ok(fired, `no @releaseDomain within 30 s of the parent's suspend (xenstore-watch printed: ${JSON.stringify(out)})`);
  const before = Math.max(...counts(parentName, 0));
  await waitForConsole(parentName, new RegExp(`SF-COUNT ${before + 2} vmid=0`), 120_000);
});

test('the parent afterwards: xl list -l, mem-set and xl save -c (a checkpoint: it runs on)', { skip: skipBox }, async () => {
  xlListLong(parent!);
  xlOk(['mem-set', String(parent), '124m']);
  assert.equal(memoryNode(parent!, 'target'), 126976);
  const before = Math.max(...counts(parentName, 0));
  const file = join(work, 'parent.xlsave');
  await xlSave(parent!, parentName, file, ['-c']);
  await waitForConsole(parentName, new RegExp(`SF-COUNT ${before + 2} vmid=0`), 120_000);
  rmSync(file);
});

test('xl\'s record of a clone goes with it', { skip: skipBox }, async () => {
  for (const c of made.filter((m) => m.uuid)) {
    await destroyClone(xc, xs, c.domid, c.uuid);
    assert.ok(!existsSync(`/var/lib/xen/userdata-d.${c.domid}.${c.uuid}.libxl-json`), `domain ${c.domid}'s libxl record removed`);
    assert.equal(xs.read(`/libxl/${c.domid}/device/vif/0/backend`), null);
  }
  made.splice(0);
});
