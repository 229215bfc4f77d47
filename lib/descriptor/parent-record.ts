// What the toolstack knows of the parent, beyond Xen's own state: its memory limits as libxl
// set them, its libxl configuration, and the control features its kernel announced. A clone
// gets the same, so that xl and the guest's balloon driver treat it as they treat the parent.
import type { XenStore } from '../xen/native.js';
import { domainPath } from '../xen/domain-xenstore.js';
import { readDomainConfig, type LibxlConfig } from '../xen/libxl-config.js';
import { CONTROL_FEATURES } from './format.js';

export interface ParentRecord {
  memory: { staticMaxKiB?: number; targetKiB?: number };
  libxl?: LibxlConfig;
  control: Record<string, string>;
}

export function readParentRecord(xs: XenStore, domid: number, uuid: string, maxPages: number): ParentRecord {
  const home = domainPath(domid);
  // memory/ is dom0's (the guest may only read it); still, only plain numbers within Xen's limit.
  const kib = (rel: string) => {
    const v = xs.read(`${home}/memory/${rel}`);
    const n = v !== null && /^\d{1,12}$/.test(v) ? Number(v) : NaN;
    return n > 0 && n <= maxPages * 4 ? n : undefined;
  };
  let staticMaxKiB = kib('static-max');
  let targetKiB = kib('target');
  if (staticMaxKiB === undefined || targetKiB === undefined || targetKiB > staticMaxKiB) staticMaxKiB = targetKiB = undefined;
  // control/ is the guest's own: only the flags a kernel writes, and only "0" or "1".
  const control: Record<string, string> = {};
  for (const feature of CONTROL_FEATURES) {
    const v = xs.read(`${home}/control/${feature}`);
    if (v === '0' || v === '1') control[feature] = v;
  }
  const libxl = readDomainConfig(domid, uuid) ?? undefined;
  return { memory: { staticMaxKiB, targetKiB }, ...(libxl ? { libxl } : {}), control };
}
