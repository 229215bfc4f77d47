// libxl's record of a domain's configuration, for clones. libxl keeps, for every domain it
// builds, the domain's configuration as JSON "userdata" (/var/lib/xen/userdata-d.<domid>.<uuid>.libxl-json)
// plus a device directory per device under /libxl/<domid>/device. Every libxl operation that
// rebuilds or changes a domain (xl list -l, save, migrate, mem-set, vcpu-set, network-attach)
// reads them first, so a clone gets the parent's, with its own name, uuid, MACs and memory.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { XenStore } from './native.js';
import { backendPath, type NicRecord } from './clone-nic.js';
import { domainPath } from './domain-xenstore.js';

/** Where libxl keeps per-domain userdata (XEN_LIB_DIR); SNOWFLOCK_LIBXL_DIR for tests. */
export const libxlDir = () => process.env.SNOWFLOCK_LIBXL_DIR ?? '/var/lib/xen';

export const userdataPath = (domid: number, uuid: string) => join(libxlDir(), `userdata-d.${domid}.${uuid}.libxl-json`);

/** libxl's domain configuration, as far as snowflock reads or changes it; the rest is kept as is. */
export interface LibxlConfig {
  c_info: { type?: string; name?: string; uuid?: string; [k: string]: unknown };
  b_info: { max_memkb?: number; target_memkb?: number; max_vcpus?: number; [k: string]: unknown };
  nics?: { devid?: number; mac?: string; bridge?: string; script?: string; [k: string]: unknown }[];
  disks?: unknown[];
  [k: string]: unknown;
}

export class LibxlConfigError extends Error {}

/** The domain's configuration as libxl recorded it, or null when libxl did not build it. */
export function readDomainConfig(domid: number, uuid: string): LibxlConfig | null {
  const path = userdataPath(domid, uuid);
  if (!existsSync(path)) return null;
  let parsed: unknown;
  try {
    // libxl stores the string with its C terminator.
    parsed = JSON.parse(readFileSync(path, 'utf8').replace(/\0+$/, ''));
  } catch (e) {
    throw new LibxlConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  checkConfig(parsed, path);
  return parsed;
}

export function checkConfig(c: unknown, source: string): asserts c is LibxlConfig {
  const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(c) || !isObject((c as LibxlConfig).c_info) || !isObject((c as LibxlConfig).b_info)) {
    throw new LibxlConfigError(`${source}: not a libxl domain configuration (no c_info/b_info)`);
  }
  const nics = (c as LibxlConfig).nics;
  if (nics !== undefined && (!Array.isArray(nics) || !nics.every(isObject))) throw new LibxlConfigError(`${source}: nics is not a list of objects`);
}

export interface CloneIdentity {
  name: string;
  uuid: string;
  type: 'pv' | 'pvh' | 'hvm';
  vcpus: number;
  staticMaxKiB: number;
  targetKiB: number;
  /** the clone's vifs: the parent's devid and bridge, the clone's MAC */
  nics: { nic: NicRecord; mac: string }[];
}

/**
 * The clone's configuration: the parent's (when libxl built the parent) with the clone's
 * identity, memory and vifs; devices a clone does not get are left out (libxl would otherwise
 * drop them itself with a warning on every read). Without the parent's, a minimal one.
 */
export function cloneDomainConfig(parent: LibxlConfig | null | undefined, id: CloneIdentity): LibxlConfig {
  const base: LibxlConfig = parent
    ? structuredClone(parent)
    : { c_info: { type: id.type }, b_info: { max_vcpus: id.vcpus, avail_vcpus: Array.from({ length: id.vcpus }, (_, i) => i), type: { [id.type]: {} } } };
  base.c_info = { ...base.c_info, name: id.name, uuid: id.uuid };
  base.b_info = { ...base.b_info, max_memkb: id.staticMaxKiB, target_memkb: id.targetKiB };
  const parentNics = new Map((parent?.nics ?? []).map((n) => [n.devid ?? 0, n]));
  base.nics = id.nics.map(({ nic, mac }) => ({ ...(parentNics.get(nic.devid) ?? {}), devid: nic.devid, bridge: nic.bridge, mac }));
  for (const key of ['disks', 'pcidevs', 'vfbs', 'vkbs', 'vtpms', 'p9s', 'channels', 'usbctrls', 'usbdevs', 'vdispls', 'vsnds', 'pvcallsifs']) delete base[key];
  return base;
}

/** Records the configuration the way libxl does (a whole file, replaced atomically). */
export function writeDomainConfig(domid: number, uuid: string, config: LibxlConfig): void {
  const path = userdataPath(domid, uuid);
  const tmp = `${path}.snowflock-tmp`;
  // With the terminating NUL, as libxl stores it: libxl parses the file's bytes as a C string.
  writeFileSync(tmp, JSON.stringify(config, null, 4) + '\n\0', { mode: 0o600 });
  renameSync(tmp, path);
}

/** Removes the clone's userdata and libxl's lock file for it; safe when gone. */
export function removeDomainConfig(domid: number, uuid: string): void {
  rmSync(userdataPath(domid, uuid), { force: true });
  rmSync(join(libxlDir(), `userdata-l.${domid}.${uuid}.domain-userdata-lock`), { force: true });
}

/**
 * libxl's own directory for a vif (/libxl/<domid>/device/vif/<devid>), which it lists devices
 * from: its frontend and backend paths and a copy of the backend's settings. The hotplug script
 * libxl runs when it removes the vif (xl destroy, network-detach) is read from here.
 */
export function writeLibxlNicEntries(xs: XenStore, domid: number, nic: NicRecord, mac: string, script: string): void {
  const dir = `/libxl/${domid}/device/vif/${nic.devid}`;
  const entries: Record<string, string> = {
    frontend: `${domainPath(domid)}/device/vif/${nic.devid}`, backend: backendPath(domid, nic.devid),
    'frontend-id': String(domid), 'backend-id': '0', online: '1', state: '1',
    handle: String(nic.devid), mac, bridge: nic.bridge, type: 'vif', script,
  };
  for (const [k, v] of Object.entries(entries)) xs.write(`${dir}/${k}`, v);
}

/** The hotplug script libxl should run for the clone's vif: the parent's, as libxl recorded it. */
export function nicScript(parent: LibxlConfig | null | undefined, devid: number): string {
  const script = parent?.nics?.find((n) => (n.devid ?? 0) === devid)?.script;
  // The record is root's, not the guest's; still, only a script name or a plain absolute path.
  return typeof script === 'string' && /^[\w./-]+$/.test(script) && !script.includes('..') ? script : 'vif-bridge';
}
