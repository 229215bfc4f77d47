// doctor's verdicts on the probed memory features: a warning only where something snowflock
// would use is missing.
import { describe, expect, it } from 'vitest';
import { memoryFeatureChecks } from '../../lib/doctor/feature-checks.js';
import type { FeatureReport, FeatureResult } from '../../lib/xen/native.js';

const yes: FeatureResult = { available: true };
const noEpt: FeatureResult = { available: false, errno: 95, reason: 'xc_monitor_enable failed', xenLog: 'mem_access needs EPT' };
const noPaging: FeatureResult = { available: false, errno: 95, reason: 'xc_mem_paging_enable failed' };
const report = (memPaging: FeatureResult, memAccess: FeatureResult): FeatureReport => ({ hap: true, memPaging, memSharing: noEpt, memAccess });
const memAccess = (f: FeatureReport) => memoryFeatureChecks(f).find((c) => c.id === 'xen.mem-access')!;

describe('doctor: memory features', () => {
  it('mem_access missing where mem_paging works (AMD, project Xen): not used, no warning', () => {
    const c = memAccess(report(yes, noEpt));
    expect(c.status).toBe('skip');
    expect(c.detail).toMatch(/^not used on this CPU \(mem_paging is\)/);
    expect(c.detail).toContain('errno 95'); // the probe's reason stays visible
  });

  it('mem_access missing and mem_paging missing too: a warning, since clones can only be eager', () => {
    const c = memAccess(report(noPaging, noEpt));
    expect(c.status).toBe('warn');
    expect(c.detail).toMatch(/eager/);
    expect(memoryFeatureChecks(report(noPaging, noEpt)).find((x) => x.id === 'xen.mem-paging')!.status).toBe('warn');
  });

  it('mem_access usable (Intel EPT): ok', () => {
    expect(memAccess(report(noPaging, yes)).status).toBe('ok');
  });

  it('gives mem_paging, mem_sharing and mem_access one check each', () => {
    expect(memoryFeatureChecks(report(yes, noEpt)).map((c) => [c.id, c.status])).toEqual([
      ['xen.mem-paging', 'ok'], ['xen.mem-sharing', 'skip'], ['xen.mem-access', 'skip'],
    ]);
  });
});
