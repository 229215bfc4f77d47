// The main demo: a running guest is forked into two clones on this host. Each clone carries
// on from the parent's exact state and knows its own vmid; the parent keeps running.
// With mem_paging (the project's Xen, or a host that has it) the clones get their memory on
// demand: the parent fills memory with a pattern and keeps rewriting it, each clone checks
// every page it reads and fetches only what it touches. Without it the clones are eager
// copies and the parent just counts. Everything it starts, it destroys.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon } from '../xen/native.js';
import { openXen } from '../xen/control.js';
import { xlCreate } from '../xen/xl.js';
import { readConsole, waitForConsole } from '../xen/console.js';
import { testGuestImage } from '../testbox/guest-image.js';
import { cloneEager } from '../clone/eager.js';
import { cloneLazy } from '../clone/lazy.js';
import { requestMemtapStats } from '../memtap/stats.js';
import { destroyClone } from '../descriptor/restore.js';
import { runDoctor } from '../doctor/index.js';
import { table } from '../cli/output.js';
import { checkMismatches, patternMismatches } from './verdict.js';

const lastCount = (name: string, vmid: number) => {
  const all = [...readConsole(name).matchAll(new RegExp(`SF-COUNT (\\d+) vmid=${vmid}\\b`, 'g'))];
  return all.length ? Number(all.at(-1)![1]) : -1;
};

export async function forkDemo(say: (text: string) => void, clones = 2): Promise<void> {
  const checks = await runDoctor({ probeFeatures: true });
  say('doctor:\n' + table(['CHECK', 'STATUS', 'DETAIL'], checks.filter((c) => c.group === 'xen').map((c) => [c.id, c.status, c.detail])));
  if (checks.some((c) => c.id === 'xen.mem-paging' && c.status === 'ok')) return onDemandDemo(say, clones);
  say('this Xen has no mem_paging: the clones are eager copies (run the demo with --xen custom for memory on demand)');

  const xc = openXen();
  const xs = new (loadAddon().XenStore)();
  const name = `sf-demo-${process.pid}`;
  let parent: number | undefined;
  const made: { domid: number; uuid: string }[] = [];
  try {
    const image = testGuestImage();
    say(`starting the parent: PVH test guest ${name}, 128 MiB`);
    parent = await xlCreate({ name, type: 'pvh', kernel: image.kernel, ramdisk: image.initrd, memoryMiB: 128, vcpus: 1 });
    await waitForConsole(name, /SF-COUNT \d+ vmid=0/, 120_000, 3);
    say(`parent is domain ${parent}; its console counts: SF-COUNT ${lastCount(name, 0)} vmid=0`);

    say(`forking it into ${clones} clones`);
    const r = await cloneEager(xc, xs, parent, { count: clones, workdir: join(tmpdir(), 'snowflock-demo'), progress: (m) => say(m) });
    made.push(...r.clones);
    say(table(['VMID', 'DOMID', 'NAME', 'BUILD(ms)'], r.clones.map((c) => [c.vmid, c.domid, c.name, c.buildMs])));
    say(`parent stopped ${r.pauseMs} ms in all; descriptor ${r.descriptorBytes} bytes for ${r.imagePages} pages`);

    for (const c of r.clones) {
      await waitForConsole(c.name, new RegExp(`SF-COUNT \\d+ vmid=${c.vmid}`), 120_000, 2);
      say(`clone ${c.vmid} (domain ${c.domid}) resumed and counts on: SF-COUNT ${lastCount(c.name, c.vmid)} vmid=${c.vmid}`);
    }
    const before = lastCount(name, 0);
    await waitForConsole(name, new RegExp(`SF-COUNT ${before + 1} vmid=0`), 60_000);
    say(`the parent keeps running: SF-COUNT ${before + 1} vmid=0`);
    say('domains, through the addon:\n' + table(['ID', 'TYPE', 'MEM(MiB)', 'STATE'],
      xc.listDomains().map((d) => [d.domid, d.type, Math.round((d.totPages * 4) / 1024), d.state])));
  } finally {
    for (const c of made) await destroyClone(xc, xs, c.domid, c.uuid).catch(() => {});
    if (parent !== undefined) await xc.destroy(parent).catch(() => {});
    say('destroyed the parent and its clones');
    xs.close();
    xc.close();
  }
}

const memLines = (name: string, vmid: number) => [...readConsole(name).matchAll(new RegExp(`SF-MEM pass=(\\d+) gen=(\\d+) bad=(\\d+) pages=(\\d+) vmid=${vmid}\\b`, 'g'))];

async function onDemandDemo(say: (text: string) => void, clones: number): Promise<void> {
  const xc = openXen();
  const xs = new (loadAddon().XenStore)();
  const name = `sf-demo-${process.pid}`;
  const mib = 192;
  let parent: number | undefined;
  const made: { domid: number; uuid: string; memtapLog: string; memtapPid: number; name: string; vmid: number }[] = [];
  try {
    const image = testGuestImage();
    say(`starting the parent: PVH test guest ${name}, ${mib} MiB, writing a 64 MiB pattern and rewriting it every pass`);
    const cmdline = 'xen.fifo_events=0 sf.workload=memtest sf.mb=64 sf.mode=rewrite sf.reportfree=1';
    parent = await xlCreate({ name, type: 'pvh', kernel: image.kernel, ramdisk: image.initrd, memoryMiB: mib, vcpus: 1, cmdline });
    await waitForConsole(name, /SF-MEM pass=2 /, 300_000);
    say(`parent is domain ${parent}: ${memLines(name, 0).at(-1)![0]}`);

    say(`forking it into ${clones} clones, memory on demand`);
    const r = await cloneLazy(xc, xs, parent, { count: clones, progress: (m) => say(m) });
    made.push(...r.clones);
    say(table(['VMID', 'DOMID', 'NAME', 'PAGED-OUT', 'READY(ms)'], r.clones.map((c) => [c.vmid, c.domid, c.name, c.evicted, c.buildMs])));
    say(`parent stopped ${r.pauseMs} ms (descriptor ${r.descriptorBytes} bytes + local memory copy); memserver pid ${r.memserver.pid}: ` +
      `${r.memserver.evictPages} pages to serve, ${r.memserver.zeroPages} zero pages never fetched`);
    for (const c of r.clones) {
      await waitForConsole(c.name, /SF-MEM pass=\d+ .*vmid=[1-9]/, 300_000, 2);
      const last = memLines(c.name, c.vmid).at(-1)!;
      say(`clone ${c.vmid} (domain ${c.domid}) runs from the fork: ${last[0]}`);
      const s = await requestMemtapStats(c.memtapPid, c.memtapLog);
      const pages = (mib << 20) / 4096;
      say(`clone ${c.vmid} fetched ${s.fetchedPages} of ${pages} pages (${((100 * s.fetchedPages) / pages).toFixed(0)}%) in ${s.faults} faults; ${s.zeroFilled} free pages zero-filled`);
    }
    const bad = r.clones.reduce((n, c) => n + patternMismatches(readConsole(c.name), c.vmid), 0);
    say(`pattern pages that did not match in any clone: ${bad}`);
    const before = memLines(name, 0).length;
    await waitForConsole(name, new RegExp(`SF-MEM pass=${before + 1} `), 120_000);
    say(`the parent keeps running and rewriting its memory: ${memLines(name, 0).at(-1)![0]}`);
    checkMismatches(bad);
  } finally {
    for (const c of made) await destroyClone(xc, xs, c.domid, c.uuid).catch(() => {});
    if (parent !== undefined) await xc.destroy(parent).catch(() => {});
    say('destroyed the parent and its clones (their memtaps and the memserver end with them)');
    xs.close();
    xc.close();
  }
}
