// Doctor checks that talk to Xen through the addon. Features are probed on a throwaway
// domain, never inferred from version strings.
import { existsSync, realpathSync } from 'node:fs';
import { loadAddon, type Addon } from '../xen/native.js';
import { openXen } from '../xen/control.js';
import { check, type Check } from './check.js';
import { memoryFeatureChecks } from './feature-checks.js';

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
      out.push(...memoryFeatureChecks(await xc.probeFeatures()));
    } else {
      out.push(check('xen.features', 'xen', 'memory features', 'skip', 'not probed (--no-probe)'));
    }
  } finally {
    xc.close();
  }
  return out;
}
