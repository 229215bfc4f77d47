// The xenstore entries a domain built by snowflock needs: what xl, xenconsoled and the guest
// expect under /local/domain/<domid>, owned the way libxl owns them.
import type { XenStore } from './native.js';

export interface DomainEntries {
  domid: number;
  name: string;
  uuid: string;
  memoryKiB: number;
  vcpus: number;
  storeGfn: number;
  storePort: number;
  consoleGfn: number;
  consolePort: number;
  type: 'pv' | 'pvh' | 'hvm';
  /** snowflock's own keys the guest agent reads: vmid, parent, family */
  snowflock: Record<string, string>;
}

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
  ro('memory/static-max', String(e.memoryKiB));
  ro('memory/target', String(e.memoryKiB));
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
