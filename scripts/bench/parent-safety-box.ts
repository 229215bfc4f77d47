// Does forking harm the parent? Run inside a Xen dom0 with mem_paging (the test box with the
// project's Xen: `scripts/bench/parent-safety`). Two arms, the same parent workload each:
//   snowflock: N on-demand forks (`snowflock clone`), every clone left running;
//   xl:        N copies by Xen's own tools (`xl save -c` then `xl restore` under a new name),
//              every copy left running beside the parent.
// Each arm counts parent deaths by kind (Xen's triple-fault dump: vmrun = Xen's own code segment
// in the guest's state, guest = any other, none = died without one) and suspends the parent did
// not answer. Then, with the arm's copies alive, `xl save -c` of the parent K times in a row.
//   node dist/scripts/bench/parent-safety-box.js [forks N] [saves K] [arms: xl,snowflock] [balloon]
// A parent that dies before its first fork is started again (once) and counted apart: no fork
// touched it. A triple fault is a reboot for HVM guests, so xl restarts a dead parent as a new
// domain: the parent is followed by its domid, not its name.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadAddon } from '../../lib/xen/native.js';
import { openXen } from '../../lib/xen/control.js';
import { waitForConsole } from '../../lib/xen/console.js';
import { xlConfig, xlCreate, type GuestConfig } from '../../lib/xen/xl.js';
import { testGuestImage } from '../../lib/testbox/guest-image.js';
import { destroyClone } from '../../lib/descriptor/restore.js';
import { processAlive } from '../../lib/memtap/spawn.js';
import type { LazyCloneResult } from '../../lib/clone/lazy.js';
import { reportMissingRows } from './missing-rows.js';

const say = (s: string) => process.stdout.write(`snowflock-bench: ${s}\n`);
const [forks, saves] = [Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 20)];
const arms = (process.argv[4] ?? 'xl,snowflock').split(',') as ('xl' | 'snowflock')[];
/** 5th argument `balloon`: an xl mem-set right before each of the parent's saves */
const balloon = process.argv[5] === 'balloon';
const xc = openXen();
const xs = new (loadAddon().XenStore)();
const work = mkdtempSync(join(tmpdir(), 'sf-safety-'));
const image = testGuestImage();

interface ArmResult { arm: string; forks: number; forked: number; unansweredSuspends: number; parentDeath: string | null; preForkDeaths: string[]; saves: number; savesOk: number; firstSaveFailure: string }

const parentConfig = (name: string): GuestConfig => ({
  name, type: 'pvh', kernel: image.kernel, ramdisk: image.initrd, memoryMiB: 160, vcpus: 1, tscMode: 'native',
  cmdline: 'xen.fifo_events=0 sf.workload=memtest sf.mode=rewrite sf.mb=48',
});

/** How the domain died, from Xen's log: the triple-fault dump's code segment, if any. */
function deathKind(domid: number): string {
  const dmesg = execFileSync('xl', ['dmesg'], { encoding: 'utf8' });
  const at = dmesg.lastIndexOf(`d${domid}v0 Triple fault`);
  if (at < 0) return 'none (no triple fault in Xen\'s log)';
  const rip = /RIP:\s+([0-9a-f]{4}):/.exec(dmesg.slice(at, at + 2000));
  return rip?.[1] === 'e008' ? 'vmrun (Xen\'s code segment in the guest\'s state)' : `guest (cs ${rip?.[1] ?? '?'})`;
}

const alive = (domid: number) => xc.listDomains().some((d) => d.domid === domid && !d.dying && !d.shutdownReason);

async function arm(label: 'snowflock' | 'xl'): Promise<ArmResult> {
  const r: ArmResult = { arm: label, forks, forked: 0, unansweredSuspends: 0, parentDeath: null, preForkDeaths: [], saves, savesOk: 0, firstSaveFailure: '' };
  let parent = -1;
  for (let attempt = 1; attempt <= 2; attempt++) {
    const name = `sf-safety-${label}-${attempt}`;
    parent = await xlCreate(parentConfig(name));
    await waitForConsole(name, /SF-MEM pass=2 /, 300_000);
    if (alive(parent)) break;
    r.preForkDeaths.push(deathKind(parent));
    spawnSync('xl', ['destroy', name]);
  }
  const name = `sf-safety-${label}`;
  const copies: { domid: number; uuid?: string }[] = [];
  const memservers: number[] = [];
  try {
    for (let i = 1; i <= forks && alive(parent); i++) {
      if (label === 'snowflock') {
        const run = spawnSync(process.execPath, ['dist/lib/cli/main.js', 'clone', String(parent), '-n', '1', '--json', '--state-dir', join(work, 'state')], { encoding: 'utf8', timeout: 600_000 });
        if (run.status === 0) {
          const f = JSON.parse(run.stdout) as LazyCloneResult;
          copies.push(...f.clones);
          memservers.push(f.memserver.pid);
          r.forked++;
        } else if (/did not suspend/.test(run.stdout + run.stderr)) r.unansweredSuspends++;
        else say(`${label} fork ${i} failed: ${(run.stdout + run.stderr).trim().slice(0, 300)}`);
      } else {
        const file = join(work, `copy${i}.xlsave`);
        const save = spawnSync('xl', ['save', '-c', String(parent), file], { encoding: 'utf8', timeout: 600_000 });
        if (save.status !== 0) {
          if (/did not suspend|timed out/.test(save.stderr)) r.unansweredSuspends++;
          else say(`${label} save ${i} failed: ${save.stderr.trim().slice(0, 300)}`);
          continue;
        }
        const cfg = join(work, `copy${i}.cfg`);
        writeFileSync(cfg, xlConfig({ ...parentConfig(`${name}-copy${i}`) }));
        const restore = spawnSync('xl', ['restore', cfg, file], { encoding: 'utf8', timeout: 600_000 });
        rmSync(file, { force: true });
        if (restore.status !== 0) say(`${label} restore ${i} failed: ${restore.stderr.trim().slice(0, 300)}`);
        else {
          copies.push({ domid: Number(execFileSync('xl', ['domid', `${name}-copy${i}`], { encoding: 'utf8' }).trim()) });
          r.forked++;
        }
      }
      // Parents died seconds after a clone started: give each fork time to show it.
      await new Promise((res) => setTimeout(res, 20_000));
    }
    if (!alive(parent)) r.parentDeath = deathKind(parent);
    for (let i = 0; i < saves && alive(parent); i++) {
      const file = join(work, 'parent.xlsave');
      // As an operator might: change the balloon target, then save at once (65.clone-xl does).
      if (balloon) spawnSync('xl', ['mem-set', String(parent), i % 2 ? '160m' : '152m'], { encoding: 'utf8' });
      const save = spawnSync('xl', ['save', '-c', String(parent), file], { encoding: 'utf8', timeout: 600_000 });
      rmSync(file, { force: true });
      if (save.status === 0) r.savesOk++;
      else if (!r.firstSaveFailure) r.firstSaveFailure = save.stderr.trim().split('\n').slice(-2).join(' | ');
    }
    if (!alive(parent) && !r.parentDeath) r.parentDeath = deathKind(parent);
  } finally {
    for (const c of copies) await destroyClone(xc, xs, c.domid, c.uuid).catch(() => {});
    for (const pid of memservers) if (processAlive(pid)) process.kill(pid, 'SIGTERM');
    spawnSync('xl', ['destroy', String(parent)]);
  }
  return r;
}

const missing: string[] = [];
if (balloon) say('each of the parent\'s saves came right after an xl mem-set (152m and 160m in turn)');
say('arm        forks  forked  unanswered-suspends  parent-death                 parent xl save -c ok');
for (const label of arms) {
  try {
    // Each row as soon as its arm is done: a later arm's failure does not take it along.
    const r = await arm(label);
    say(`${r.arm.padEnd(10)} ${String(r.forks).padStart(5)}  ${String(r.forked).padStart(6)}  ${String(r.unansweredSuspends).padStart(19)}  ${(r.parentDeath ?? 'survived').padEnd(28)} ${r.savesOk}/${r.saves}${r.firstSaveFailure ? ` (first failure: ${r.firstSaveFailure})` : ''}`);
    if (r.preForkDeaths.length) say(`${r.arm}: parents that died before any fork (started again): ${r.preForkDeaths.join('; ')}`);
  } catch (e) {
    missing.push(`${label} (${(e as Error).message})`);
  }
}
xs.close();
xc.close();
rmSync(work, { recursive: true, force: true });
reportMissingRows(say, missing);
