// Doctor checks that talk to Xen through the addon. Features are probed on a throwaway
// domain, never inferred from version strings.
import { existsSync, realpathSync } from 'node:fs';
import { loadAddon, type Addon, type FeatureResult } from '../xen/native.js';
import { openXen } from '../xen/control.js';
import { check, type Check } from './check.js';

function featureCheck(id: string, title: string, r: FeatureResult, useFor: string): Check {
  if (r.available) return check(id, 'xen', title, 'ok', `usable (${useFor})`);
  const why = [r.reason, r.errno ? `errno ${r.errno}` : '', r.xenLog ? `xen: ${r.xenLog}` : ''].filter(Boolean).join('; ');
  return check(id, 'xen', title, 'warn', `unavailable: ${why}`);
}

// Xen 4.17's VM fork (xc_memshr_fork) copies neither PV timers nor event channels
// (copy_vcpu_settings() TODO), so a PVH child that sleeps never wakes; it is Intel-only too.
// snowflock forks with memtap on every CPU and does not use it, whatever the probe says.
function memshrForkCheck(r: FeatureResult): Check {
  const limit = 'not used: Xen 4.17\'s fork does not copy PV timers or event channels, so a sleeping PVH child never wakes; same-host clones use memtap';
  if (r.available) return check('xen.mem-sharing', 'xen', 'mem_sharing (xc_memshr_fork)', 'skip', `permitted here, ${limit}`);
  const why = [r.reason, r.errno ? `errno ${r.errno}` : ''].filter(Boolean).join('; ');
  return check('xen.mem-sharing', 'xen', 'mem_sharing (xc_memshr_fork)', 'skip', `unavailable (${why}); ${limit}`);
}

export async function xenChecks(opts: { probeFeatures: boolean }): Promise<Check[]> {
  const out: Check[] = [];
  let addon: Addon;
  try {
    addon = loadAddon();
  } catch (e) {
    return [check('addon.load', 'addon', 'native addon', 'fail', (e as Error).message)];
  }
  out.push(
    addon.builtWithXen
      ? check('addon.xen-headers', 'addon', 'native addon', 'ok', 'built with Xen headers')
      : check('addon.xen-headers', 'addon', 'native addon', 'fail', 'built WITHOUT Xen headers: apt-get install libxen-dev && npm rebuild'),
  );
  for (const lib of addon.libraries()) {
    const path = lib.path && existsSync(lib.path) ? realpathSync(lib.path) : lib.path;
    out.push(
      lib.loaded
        ? check(`lib.${lib.name}`, 'addon', lib.name, 'ok', path ?? '')
        : check(`lib.${lib.name}`, 'addon', lib.name, 'fail', lib.error ?? 'not loaded'),
    );
  }
  if (!addon.builtWithXen || addon.libraries().some((l) => !l.loaded)) return out;

  const privcmd = ['/dev/xen/privcmd', '/proc/xen/privcmd'].find((p) => existsSync(p));
  out.push(
    privcmd
      ? check('xen.privcmd', 'xen', 'privcmd', 'ok', privcmd)
      : check('xen.privcmd', 'xen', 'privcmd', 'fail', 'no /dev/xen/privcmd: not a Xen dom0 (or xen-privcmd not loaded)'),
  );
  if (!privcmd) return out;
  for (const i of addon.probeInterfaces()) {
    out.push(check(`xen.${i.name}`, 'xen', `${i.name} interface`, i.ok ? 'ok' : 'fail', i.ok ? 'opens' : (i.error ?? 'does not open')));
  }

  let xc;
  try {
    xc = openXen();
  } catch (e) {
    out.push(check('xen.hypervisor', 'xen', 'hypervisor', 'fail', (e as Error).message));
    return out;
  }
  try {
    const v = xc.version();
    const p = xc.physinfo();
    out.push(check('xen.hypervisor', 'xen', 'hypervisor', 'ok', `Xen ${v.major}.${v.minor}${v.extra} (${v.capabilities})`));
    const caps = Object.entries(p.capabilities).filter(([, on]) => on).map(([k]) => k).join(' ');
    out.push(check('xen.hvm', 'xen', 'HVM/PVH guests', p.capabilities.hvm ? 'ok' : 'fail', `virt caps: ${caps}`));
    out.push(check('xen.hap', 'xen', 'hardware-assisted paging', p.capabilities.hap ? 'ok' : 'warn',
      p.capabilities.hap ? 'HAP present (needed by mem_paging)' : 'no HAP: memtap cannot page guests'));
    out.push(check('xen.memory', 'xen', 'free memory', 'ok',
      `${Math.round((p.freePages * 4) / 1024)} MiB free of ${Math.round((p.totalPages * 4) / 1024)} MiB, ${p.nrCpus} CPUs`));
    if (opts.probeFeatures) {
      const f = await xc.probeFeatures();
      out.push(featureCheck('xen.mem-paging', 'mem_paging (memtap)', f.memPaging, 'memory on demand'));
      out.push(memshrForkCheck(f.memSharing));
      out.push(featureCheck('xen.mem-access', 'mem_access (stock-Xen memtap)', f.memAccess, 'memtap on stock Xen, Intel EPT'));
    } else {
      out.push(check('xen.features', 'xen', 'memory features', 'skip', 'not probed (--no-probe)'));
    }
  } finally {
    xc.close();
  }
  return out;
}
