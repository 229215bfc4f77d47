// The demo until fork lands: a test guest started on Xen, seen, paused, resumed and
// destroyed through the addon, with its console counter as the witness.
import { openXen } from '../xen/control.js';
import { xlCreate } from '../xen/xl.js';
import { waitForConsole } from '../xen/console.js';
import { testGuestImage } from '../testbox/guest-image.js';
import { runDoctor } from '../doctor/index.js';
import { table } from '../cli/output.js';

const countOf = (m: RegExpMatchArray[]) => Number(m.at(-1)?.[1] ?? -1);

export async function lifecycleDemo(say: (line: string) => void): Promise<void> {
  const checks = await runDoctor({ probeFeatures: true });
  say('doctor:\n' + table(['CHECK', 'STATUS', 'DETAIL'], checks.filter((c) => c.group === 'xen').map((c) => [c.id, c.status, c.detail])));

  const xc = openXen();
  const name = `sf-demo-${process.pid}`;
  let domid: number | undefined;
  try {
    const image = testGuestImage();
    say(`starting PVH test guest ${name}`);
    domid = await xlCreate({ name, type: 'pvh', kernel: image.kernel, ramdisk: image.initrd, memoryMiB: 128, vcpus: 1 });
    const first = await waitForConsole(name, /SF-COUNT (\d+)/, 120_000, 2);
    say(`guest ${name} is domain ${domid}; its console counts (at ${countOf(first)})`);
    say('domains, through the addon:\n' + table(['ID', 'TYPE', 'MEM(MiB)', 'STATE'],
      xc.listDomains().map((d) => [d.domid, d.type, Math.round((d.totPages * 4) / 1024), d.state])));

    xc.pause(domid);
    say(`paused: state ${xc.domainInfo(domid).state}`);
    await new Promise((r) => setTimeout(r, 2000));
    xc.unpause(domid);
    const seen = countOf(await waitForConsole(name, /SF-COUNT (\d+)/, 10_000));
    const next = await waitForConsole(name, new RegExp(`SF-COUNT (${seen + 1})`), 60_000);
    say(`unpaused: state ${xc.domainInfo(domid).state}, counter moved on to ${countOf(next)}`);
  } finally {
    if (domid !== undefined) {
      await xc.destroy(domid);
      say(`destroyed domain ${domid}`);
    }
    xc.close();
  }
}
