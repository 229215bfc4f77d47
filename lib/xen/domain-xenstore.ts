// The xenstore entries a domain built by snowflock needs: what xl, xenconsoled and the guest
// expect under /local/domain/<domid>, owned the way libxl owns them.
import type { XenStore } from './native.js';

export interface DomainEntries {
  domid: number;
  name: string;
  uuid: string;
  /** memory/static-max and memory/target, the parent's at the fork */
  staticMaxKiB: number;
  targetKiB: number;
  vcpus: number;
  storeGfn: number;
  storePort: number;
  consoleGfn: number;
  consolePort: number;
  type: 'pv' | 'pvh' | 'hvm';
  /** snowflock's own keys the guest agent reads: vmid, parent, family */
  snowflock: Record<string, string>;
  /** control/feature-* flags the parent's kernel announced (a resumed kernel does not write them again) */
  control?: Record<string, string>;
}

/** Nodes libxl makes for the guest to write into, so its shutdown and sysrq watches see dom0's writes. */
const GUEST_CONTROL_NODES = ['control/shutdown', 'control/sysrq', 'device/suspend/event-channel'];

export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

export function writeDomainEntries(xs: XenStore, e: DomainEntries): void {
  const home = domainPath(e.domid);
  // dom0 owns the home; the guest may read it (libxl's "roperm").
  const readOnly = [{ domid: 0 }, { domid: e.domid, read: true }];
  // The guest owns what it writes into (libxl's "rwperm").
  const readWrite = [{ domid: e.domid }];
  xs.mkdir(home);
  xs.setPermissions(home, readOnly);
  const ro = (rel: string, value?: string) => {
    const path = `${home}/${rel}`;
    if (value === undefined) xs.mkdir(path);
    else xs.write(path, value);
    xs.setPermissions(path, readOnly);
  };
  const rw = (rel: string) => {
    xs.mkdir(`${home}/${rel}`);
    xs.setPermissions(`${home}/${rel}`, readWrite);
  };
  ro('name', e.name);
  ro('domid', String(e.domid));
  ro('vm', `/vm/${e.uuid}`);
  ro('memory');
  ro('memory/static-max', String(e.staticMaxKiB));
  ro('memory/target', String(e.targetKiB));
  ro('cpu');
  for (let v = 0; v < e.vcpus; v++) ro(`cpu/${v}/availability`, 'online');
  ro('store/ring-ref', String(e.storeGfn));
  ro('store/port', String(e.storePort));
  ro('console/ring-ref', String(e.consoleGfn));
  ro('console/port', String(e.consolePort));
  ro('console/type', 'xenconsoled');
  ro('console/output', 'pty');
  ro('device');
  rw('control');
  for (const node of GUEST_CONTROL_NODES) rw(node);
  for (const [k, v] of Object.entries(e.control ?? {})) {
    xs.write(`${home}/control/${k}`, v);
    xs.setPermissions(`${home}/control/${k}`, readWrite);
  }
  // What libxl tells every guest the toolstack supports.
  ro('control/platform-feature-multiprocessor-suspend', '1');
  ro('control/platform-feature-xs_reset_watches', '1');
  rw('data');
  rw('drivers');
  rw('feature');
  rw('attr');
  rw('error');
  ro('snowflock');
  for (const [k, v] of Object.entries(e.snowflock)) ro(`snowflock/${k}`, v);
  // libxl (xl destroy, xl list -l) looks the domain type up here.
  xs.write(`/libxl/${e.domid}/type`, e.type);
  xs.mkdir(`/vm/${e.uuid}`);
  xs.write(`/vm/${e.uuid}/name`, e.name);
  xs.write(`/vm/${e.uuid}/uuid`, e.uuid);
  xs.write(`/vm/${e.uuid}/start_time`, (Date.now() / 1000).toFixed(2)); // xl uptime
}

/** Removes everything writeDomainEntries created; safe when some of it is gone. */
export function removeDomainEntries(xs: XenStore, domid: number, uuid?: string): void {
  xs.rm(domainPath(domid));
  xs.rm(`/libxl/${domid}`);
  if (uuid) xs.rm(`/vm/${uuid}`);
}

export function listDevices(xs: XenStore, domid: number): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const cls of xs.directory(`${domainPath(domid)}/device`) ?? []) {
    out[cls] = xs.directory(`${domainPath(domid)}/device/${cls}`) ?? [];
  }
  return out;
}
