// Verdicts on the memory features Xen was probed for (xc.probeFeatures()), per what snowflock
// uses each one for.
import type { FeatureReport, FeatureResult } from '../xen/native.js';
import { check, type Check } from './check.js';

function why(r: FeatureResult): string {
  return [r.reason, r.errno ? `errno ${r.errno}` : '', r.xenLog ? `xen: ${r.xenLog}` : ''].filter(Boolean).join('; ');
}

function memPagingCheck(r: FeatureResult): Check {
  const title = 'mem_paging (memtap)';
  if (r.available) return check('xen.mem-paging', 'xen', title, 'ok', 'usable (memory on demand)');
  return check('xen.mem-paging', 'xen', title, 'warn', `unavailable: ${why(r)}`);
}

// Xen 4.17's VM fork (xc_memshr_fork) copies neither PV timers nor event channels
// (copy_vcpu_settings() TODO), so a PVH child that sleeps never wakes; it is Intel-only too.
// snowflock forks with memtap on every CPU and does not use it, whatever the probe says.
function memSharingCheck(r: FeatureResult): Check {
  const title = 'mem_sharing (xc_memshr_fork)';
  const limit = 'not used: Xen 4.17\'s fork does not copy PV timers or event channels, so a sleeping PVH child never wakes; same-host clones use memtap';
  if (r.available) return check('xen.mem-sharing', 'xen', title, 'skip', `permitted here, ${limit}`);
  return check('xen.mem-sharing', 'xen', title, 'skip', `unavailable (${why(r)}); ${limit}`);
}

// mem_access is memtap's backend for stock Xen (--backend access), which needs Intel EPT. Where
// mem_paging works memtap uses that, so mem_access missing (any AMD CPU) is nothing to warn of.
function memAccessCheck(access: FeatureResult, paging: FeatureResult): Check {
  const title = 'mem_access (stock-Xen memtap)';
  if (access.available) return check('xen.mem-access', 'xen', title, 'ok', 'usable (memtap on stock Xen, Intel EPT: --backend access)');
  if (paging.available) return check('xen.mem-access', 'xen', title, 'skip', `not used on this CPU (mem_paging is); unavailable: ${why(access)}`);
  return check('xen.mem-access', 'xen', title, 'warn', `unavailable: ${why(access)}; without mem_paging either, clones are eager copies only`);
}

export function memoryFeatureChecks(f: FeatureReport): Check[] {
  return [memPagingCheck(f.memPaging), memSharingCheck(f.memSharing), memAccessCheck(f.memAccess, f.memPaging)];
}
