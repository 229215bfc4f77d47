/**
 * The guest's vchan channel to its dom0 daemon. A vchan server serves exactly one peer domain,
 * so dom0 serves each guest at its own path under its `data/vchan/<name>`:
 *   /local/domain/0/data/vchan/<name>/<guest domid>
 * (lib/daemon/vchan-transport.ts, rings of 64 KiB each way). The guest reads its own domid from
 * xenstore on every connect: a clone has a new one, and reconnects after the fork. A clone
 * notices the fork by its new Xen handle (vm-identity.ts) and leaves the parent's vchan alone.
 *
 * Needs ffi-rs and libxenvchan in the guest (vchan-lib.ts); tested only inside Xen.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { FramedSocket } from '../daemon/framed-socket.js';
import { ChannelUnavailableError, MessageChannel, type GuestChannel } from './channel.js';
import { loadVchanLib } from './vchan-lib.js';
import { VchanStream } from './vchan-stream.js';
import { sameVmCheck } from './vm-identity.js';

export const DEFAULT_VCHAN_NAME = 'snowflock';
const CONNECT_TRIES = 20;

export interface VchanChannelOptions {
  name?: string;
  /** This guest's domid; read from xenstore when left out. */
  domid?: number;
  /** Overrides the whole xenstore path of the server. */
  xsPath?: string;
}

export function vchanPath(name: string, domid: number): string {
  return `/local/domain/0/data/vchan/${name}/${domid}`;
}

export async function connectVchan(o: VchanChannelOptions = {}): Promise<GuestChannel> {
  const lib = loadVchanLib();
  const stillOurs = sameVmCheck();
  const path = o.xsPath ?? vchanPath(o.name ?? DEFAULT_VCHAN_NAME, o.domid ?? (await ownDomid()));
  // dom0 sets the server up again after each connection: give it a moment before giving up.
  let h = lib.clientInit(0, path);
  for (let i = 0; !h && i < CONNECT_TRIES; i++) {
    await new Promise((r) => setTimeout(r, 100));
    h = lib.clientInit(0, path);
  }
  if (!h) throw new ChannelUnavailableError(`cannot open the vchan at ${path}: is the snowflock host daemon serving this domain?`);
  return new MessageChannel(new FramedSocket(new VchanStream(lib, h, false, stillOurs), `vchan ${path}`));
}

/** `xenstore-read domid` resolves relative to the guest's own home (Debian: xenstore-utils). */
async function ownDomid(): Promise<number> {
  let out: string;
  try {
    out = (await promisify(execFile)('xenstore-read', ['domid'], { timeout: 10_000 })).stdout;
  } catch (e) {
    throw new ChannelUnavailableError(`cannot learn this guest's domid with xenstore-read (package xenstore-utils): ${(e as Error).message}`);
  }
  const domid = Number(out.trim());
  if (!Number.isSafeInteger(domid) || domid <= 0) throw new ChannelUnavailableError(`xenstore-read domid gave ${JSON.stringify(out.trim())}`);
  return domid;
}
