// The main demo: a running guest is forked into two clones on this host. Each clone carries
// on from the parent's exact state (its console counter continues) and knows its own vmid;
// the parent keeps running. Everything it starts, it destroys.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon } from '../xen/native.js';
import { openXen } from '../xen/control.js';
import { xlCreate } from '../xen/xl.js';
import { readConsole, waitForConsole } from '../xen/console.js';
import { testGuestImage } from '../testbox/guest-image.js';
import { cloneEager } from '../clone/eager.js';
import { destroyClone } from '../descriptor/restore.js';
import { runDoctor } from '../doctor/index.js';
import { table } from '../cli/output.js';

const lastCount = (name: string, vmid: number) => {
  const all = [...readConsole(name).matchAll(new RegExp(`SF-COUNT (\\d+) vmid=${vmid}\\b`, 'g'))];
  return all.length ? Number(all.at(-1)![1]) : -1;
};

export async function forkDemo(say: (text: string) => void, clones = 2): Promise<void> {
  const checks = await runDoctor({ probeFeatures: true });
  say('doctor:\n' + table(['CHECK', 'STATUS', 'DETAIL'], checks.filter((c) => c.group === 'xen').map((c) => [c.id, c.status, c.detail])));

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
