/**
 * Whether a domid still names the domain a caller recorded: Xen reuses domids, so a clone that
 * died (or was destroyed by someone else) may have left its number to an unrelated domain.
 */
import type { XenControl } from '../xen/native.js';

export type DomidHolder = 'it' | 'another' | 'none';

export function whoHoldsDomid(xc: XenControl, domid: number, uuid: string): DomidHolder {
  let current: string;
  try {
    current = xc.domainInfo(domid).uuid;
  } catch (e) {
    if ((e as { code?: string }).code === 'ESRCH') return 'none';
    throw e;
  }
  return current.toLowerCase() === uuid.toLowerCase() ? 'it' : 'another';
}
