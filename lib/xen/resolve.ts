// Domains named the way xl users name them: a domid or a name.
import type { XenControl, XenStore } from './native.js';

export class UnknownDomainError extends Error {
  override name = 'UnknownDomainError';
}

export function resolveDomain(xc: XenControl, xs: XenStore, ref: string | number): number {
  const s = String(ref).trim();
  if (/^\d+$/.test(s)) {
    const domid = Number(s);
    if (!xc.listDomains().some((d) => d.domid === domid)) throw new UnknownDomainError(`no domain ${domid} on this host`);
    return domid;
  }
  for (const d of xc.listDomains()) if (xs.read(`/local/domain/${d.domid}/name`) === s) return d.domid;
  throw new UnknownDomainError(`no domain named ${s} on this host`);
}

export function domainName(xs: XenStore, domid: number): string {
  return xs.read(`/local/domain/${domid}/name`) ?? `domain-${domid}`;
}
