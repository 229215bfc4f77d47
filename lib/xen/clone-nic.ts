// A clone's network interfaces: the parent's vifs, recreated with a new MAC on the same bridge.
// What libxl and its vif-bridge hotplug script do for a new vif, done for a domain libxl did not
// build: backend and frontend entries in xenstore, then (once xen-netback has made the vif
// netdev) the netdev joined to the bridge and "hotplug-status" set. The clone's netfront reads
// the new MAC when its resume reconnects to the backend, so the clone has its own link identity.
import { existsSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { XenStore } from './native.js';
import { domainPath } from './domain-xenstore.js';

const exec = promisify(execFile);

/** A parent's vif as the descriptor records it. */
export interface NicRecord {
  devid: number;
  mac: string;
  /** the dom0 bridge the parent's vif is on (libxl's backend "bridge" key) */
  bridge: string;
}

export class CloneNicError extends Error {}

/**
 * The parent's vifs served by dom0; ones without a bridge (routed, NAT) are skipped with a reason.
 * The facts come from dom0's backend directory, which only dom0 writes: the guest owns its
 * frontend directory, so its "backend" and "mac" could name another domain's vif (and with it
 * that domain's bridge and MAC). A vif counts only when the frontend's backend is dom0's own
 * backend for this domain's vif and that backend names this frontend back.
 */
export function readNics(xs: XenStore, domid: number): { nics: NicRecord[]; skipped: string[] } {
  const nics: NicRecord[] = [];
  const skipped: string[] = [];
  for (const id of xs.directory(`${domainPath(domid)}/device/vif`) ?? []) {
    const found = readNic(xs, domid, id);
    if (typeof found === 'string') skipped.push(`vif ${id}: ${found}`);
    else nics.push(found);
  }
  return { nics, skipped };
}

/** One vif's record, or why it is skipped. */
function readNic(xs: XenStore, domid: number, id: string): NicRecord | string {
  if (!/^\d{1,9}$/.test(id)) return 'not a device number';
  const devid = Number(id);
  const front = `${domainPath(domid)}/device/vif/${id}`;
  const back = backendPath(domid, devid);
  const named = xs.read(`${front}/backend`);
  if (!named?.startsWith('/local/domain/0/')) return 'not served by dom0';
  if (named !== back) return `its frontend names backend ${named}, not dom0's ${back}`;
  const frontendId = xs.read(`${back}/frontend-id`);
  if (frontendId !== String(domid)) return `dom0's backend serves domain ${frontendId ?? '(none)'}, not ${domid}`;
  const frontend = xs.read(`${back}/frontend`);
  if (frontend !== front) return `dom0's backend serves ${frontend ?? '(none)'}, not ${front}`;
  const mac = xs.read(`${back}/mac`);
  if (!mac) return 'no MAC';
  const bridge = xs.read(`${back}/bridge`);
  if (!bridge) return 'not on a bridge';
  return { devid, mac, bridge };
}

/** A new MAC in Xen's OUI (00:16:3e), as xl picks one for a vif without a MAC. */
export function newMac(): string {
  return xenOuiMac(randomBytes(3));
}

/** Xen's OUI and three bytes, the first with its top bit clear, as xl keeps it. */
function xenOuiMac(bytes: Buffer): string {
  const tail = [bytes[0]! & 0x7f, bytes[1]!, bytes[2]!];
  return ['00', '16', '3e', ...tail.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * A clone's MAC that every host of its family can compute (for the family filter): Xen's OUI
 * and three bytes of a hash of the fork, the vmid and the vif.
 */
export function familyMac(fork: string, vmid: number, devid: number): string {
  return xenOuiMac(createHash('sha256').update(`${fork}/${vmid}/${devid}`).digest());
}

export const backendPath = (domid: number, devid: number) => `/local/domain/0/backend/vif/${domid}/${devid}`;
export const vifName = (domid: number, devid: number) => `vif${domid}.${devid}`;

/**
 * Writes the backend and frontend entries of the clone's vifs, each with a new MAC (returned
 * in the order of `nics`). The clone must not run yet: its netfront reconnects on resume.
 */
export function writeCloneNics(
  xs: XenStore, domid: number, nics: NicRecord[],
  o: { macs?: string[]; bridgeExists?: (name: string) => boolean; scripts?: string[] } = {},
): string[] {
  const macs = o.macs ?? nics.map(() => newMac());
  const bridgeExists = o.bridgeExists ?? ((name: string) => existsSync(`/sys/class/net/${name}/bridge`));
  for (const nic of nics) {
    if (!bridgeExists(nic.bridge)) {
      throw new CloneNicError(`the parent's vif ${nic.devid} is on bridge ${nic.bridge}, which this host does not have (create it, or clone to a host that has it)`);
    }
  }
  nics.forEach((nic, i) => {
    const back = backendPath(domid, nic.devid);
    const front = `${domainPath(domid)}/device/vif/${nic.devid}`;
    const mac = macs[i]!;
    // dom0 owns the backend, the guest may read it; the guest owns its frontend (libxl's layout).
    const backPerms = [{ domid: 0 }, { domid, read: true }];
    const frontPerms = [{ domid }, { domid: 0, read: true }];
    // Frontend first, backend "state" last: xen-netback probes a backend once its state reads
    // Initialising, and then wants the rest (libxl writes all in one transaction).
    xs.mkdir(front);
    xs.setPermissions(front, frontPerms);
    for (const [k, v] of Object.entries({ 'backend': back, 'backend-id': '0', 'handle': String(nic.devid), 'mac': mac, 'state': '1' })) {
      xs.write(`${front}/${k}`, v);
      xs.setPermissions(`${front}/${k}`, frontPerms);
    }
    xs.mkdir(back);
    xs.setPermissions(back, backPerms);
    for (const [k, v] of Object.entries({
      'frontend': front, 'frontend-id': String(domid), 'online': '1', 'handle': String(nic.devid),
      // The hotplug script libxl runs when it takes the vif down (xl destroy, save, migrate).
      'mac': mac, 'bridge': nic.bridge, 'type': 'vif', 'script': o.scripts?.[i] ?? 'vif-bridge', 'state': '1',
    })) xs.write(`${back}/${k}`, v);
  });
  return macs;
}

/** Marks a vif held off its bridge; in the backend directory, which only dom0 may write. */
const HELD_KEY = 'snowflock-held';

/**
 * Joins each clone vif netdev to its bridge once xen-netback has created it, and marks the
 * hotplug done (netback then lets the frontend connect).
 *
 * With `hold`, the vif comes up off the bridge (and is marked held). A resumed clone sends some
 * frames with the parent's MAC as their source, which moves the parent's MAC behind the clone's
 * port in the bridge's forwarding table, and it holds and announces the parent's IPv4 address
 * until it is readdressed. The guest library readdresses the clone, then asks for
 * releaseCloneNics.
 */
export async function plugCloneNics(xs: XenStore, domid: number, nics: NicRecord[], o: { hold?: boolean; timeoutMs?: number } = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 20_000;
  for (const nic of nics) {
    const dev = vifName(domid, nic.devid);
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(`/sys/class/net/${dev}`)) {
      if (Date.now() > deadline) {
        throw new CloneNicError(`xen-netback made no ${dev} within ${timeoutMs} ms (is the xen-netback module loaded?)`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (o.hold) {
      xs.write(`${backendPath(domid, nic.devid)}/${HELD_KEY}`, '1');
      await ipLink(['link', 'set', 'dev', dev, 'up'], `cannot bring ${dev} up`);
    } else {
      await joinBridge(dev, nic.bridge);
    }
    xs.write(`${backendPath(domid, nic.devid)}/hotplug-status`, 'connected');
  }
}

/**
 * Puts a clone's held vifs on their bridges (the ones plugCloneNics held) and returns their
 * names; vifs not held are left as they are, so a second call, or a domain with none, does nothing.
 */
export async function releaseCloneNics(xs: XenStore, domid: number): Promise<string[]> {
  const released: string[] = [];
  for (const devid of xs.directory(`/local/domain/0/backend/vif/${domid}`) ?? []) {
    const back = backendPath(domid, Number(devid));
    const bridge = xs.read(`${back}/bridge`);
    if (xs.read(`${back}/${HELD_KEY}`) !== '1' || !bridge) continue;
    const dev = vifName(domid, Number(devid));
    await joinBridge(dev, bridge);
    xs.rm(`${back}/${HELD_KEY}`);
    released.push(dev);
  }
  return released;
}

async function joinBridge(dev: string, bridge: string): Promise<void> {
  await ipLink(['link', 'set', 'dev', dev, 'master', bridge], `cannot put ${dev} on bridge ${bridge}`);
  await ipLink(['link', 'set', 'dev', dev, 'up'], `cannot bring ${dev} up`);
}

async function ipLink(args: string[], what: string): Promise<void> {
  try {
    await exec('ip', args);
  } catch (e) {
    throw new CloneNicError(`${what}: ${((e as { stderr?: string }).stderr ?? String(e)).trim()}`);
  }
}

/** Removes the clone's backend entries (xen-netback then frees the netdev); safe when gone. */
export function removeCloneNics(xs: XenStore, domid: number): void {
  xs.rm(`/local/domain/0/backend/vif/${domid}`);
}
