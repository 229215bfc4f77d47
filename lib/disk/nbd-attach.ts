// dom0's side of a disk: one export of a family's NBD unix socket connected to a free
// /dev/nbdN with Debian's nbd-client (3.24), so that blkback can serve it to a guest as a
// `phy:` vbd. Disconnected with `nbd-client -d`. Every error names the device and the export.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { DiskError } from './errors.js';

/** How nbd-client is run: resolves with its output, rejects with { code, stdout, stderr }. */
export type Runner = (file: string, args: string[]) => Promise<{ stdout: string; stderr: string }>;

export interface NbdHost {
  run: Runner;
  /** /sys/block, where nbd devices are listed */
  sysBlock: string;
  /** where device nodes are */
  dev: string;
}

const defaultRunner: Runner = (file, args) =>
  new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });

export const realNbdHost = (): NbdHost => ({ run: defaultRunner, sysBlock: '/sys/block', dev: '/dev' });

/** An attached export: the device, its block major:minor, and what it is connected to. */
export interface NbdAttachment {
  device: string;
  /** "major:minor" in hex, as libxl's block scripts write physical-device (e.g. "2b:10") */
  physicalDevice: string;
  socket: string;
  export: string;
}

/** nbd-client's argument vector for one connection (the module's default block size and timeouts). */
export function nbdClientArgv(o: { socket: string; device: string; export: string }): string[] {
  // -N: the export's name (QEMU refuses the default, unnamed export); -unix: a unix socket, not host:port.
  return ['-unix', o.socket, o.device, '-N', o.export];
}

/**
 * What nbd-client said when it failed, as one phrase: its "Error: ..." / "E: ..." lines (the
 * last is usually the cause), else its last line.
 */
export function nbdClientError(stderr: string, stdout = ''): string {
  const lines = `${stderr}\n${stdout}`.split('\n').map((l) => l.trim()).filter((l) => l && l !== 'Exiting.');
  // "Negotiation: ..Error: ..." : the progress dots and the error share a line
  const errors = lines.map((l) => /(?:^|[\s.])(?:Error|E):\s*(.*)$/.exec(l)?.[1]).filter((m): m is string => !!m);
  return errors.length ? errors.join('; ') : lines.at(-1) ?? 'no output';
}

/** The error's kind, from nbd-client's words, for the caller (a busy device is tried again with the next). */
export function nbdFailureKind(text: string): 'busy' | 'unknown-export' | 'unreachable' | 'no-module' | 'other' {
  // nbd-client 3.24 configures the device over netlink; the kernel's EBUSY comes back as "Failed to setup device".
  if (/Device or resource busy|already (in use|connected)|EBUSY|Failed to setup device/i.test(text)) return 'busy';
  // QEMU: "Server said: export 'x' not present"
  if (/export '.*' not present|unknown export|Requested export not available/i.test(text)) return 'unknown-export';
  if (/CONNECT failed|Connection refused|Socket failed/i.test(text)) return 'unreachable';
  if (/nbd netlink family|nbd module is loaded|Cannot open \/dev\/nbd/i.test(text)) return 'no-module';
  return 'other';
}

/** nbd devices whose sysfs entry shows no connection (no `pid`, size 0), lowest first. */
export function freeNbdDevices(host: NbdHost = realNbdHost()): string[] {
  let names: string[];
  try {
    names = readdirSync(host.sysBlock).filter((n) => /^nbd\d+$/.test(n));
  } catch {
    return [];
  }
  return names
    .sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)))
    .filter((n) => !existsSync(`${host.sysBlock}/${n}/pid`) && readTrim(`${host.sysBlock}/${n}/size`) === '0')
    .map((n) => `${host.dev}/${n}`);
}

/** "43:16" from /sys/block/nbdN/dev as libxl writes physical-device: "2b:10". */
export function physicalDevice(host: NbdHost, device: string): string {
  const name = device.split('/').at(-1)!;
  const text = readTrim(`${host.sysBlock}/${name}/dev`);
  const m = /^(\d+):(\d+)$/.exec(text ?? '');
  if (!m) throw new DiskError('not-found', `${device}: no block device numbers in ${host.sysBlock}/${name}/dev`);
  return `${Number(m[1]).toString(16)}:${Number(m[2]).toString(16)}`;
}

function readTrim(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Attaches within one process are serial (two would pick the same free device). */
let queue: Promise<unknown> = Promise.resolve();

/**
 * Connects `export` on `socket` to the first free /dev/nbdN (a device another process takes
 * meanwhile is skipped for the next). On failure nothing stays connected.
 */
export function attachNbd(o: { socket: string; export: string; host?: NbdHost; tries?: number }): Promise<NbdAttachment> {
  const run = queue.then(() => attach(o));
  queue = run.catch(() => undefined);
  return run;
}

async function attach(o: { socket: string; export: string; host?: NbdHost; tries?: number }): Promise<NbdAttachment> {
  const host = o.host ?? realNbdHost();
  const what = `export ${o.export} of ${o.socket}`;
  if (!existsSync(`${host.sysBlock}/nbd0`)) {
    throw new DiskError('no-storage-daemon', `attaching ${what}: this dom0 has no nbd devices (load the nbd module: modprobe nbd)`);
  }
  const free = freeNbdDevices(host).slice(0, o.tries ?? 4);
  if (!free.length) throw new DiskError('in-use', `attaching ${what}: every /dev/nbd device is in use (load nbd with a larger nbds_max)`);
  let last = '';
  for (const device of free) {
    try {
      await host.run('nbd-client', nbdClientArgv({ socket: o.socket, device, export: o.export }));
    } catch (e) {
      const err = e as { stderr?: string; stdout?: string; code?: unknown; message?: string };
      if (err.code === 'ENOENT') throw new DiskError('no-storage-daemon', `attaching ${what} to ${device}: nbd-client is not installed (apt-get install nbd-client)`);
      const text = nbdClientError(err.stderr ?? err.message ?? '', err.stdout ?? '');
      const kind = nbdFailureKind(text);
      await disconnectQuietly(host, device); // a half-made connection (kernel configured, handshake failed)
      if (kind === 'busy') {
        last = `${device}: ${text}`;
        continue;
      }
      const code = kind === 'unknown-export' ? 'unknown-export' : kind === 'unreachable' ? 'unreachable' : kind === 'no-module' ? 'no-storage-daemon' : 'qemu';
      throw new DiskError(code, `attaching ${what} to ${device}: nbd-client: ${text}`, { cause: e });
    }
    try {
      return { device, physicalDevice: physicalDevice(host, device), socket: o.socket, export: o.export };
    } catch (e) {
      await disconnectQuietly(host, device);
      throw e;
    }
  }
  throw new DiskError('in-use', `attaching ${what}: the free nbd devices were taken meanwhile (${last})`);
}

/** `nbd-client -d`: the device's connection ends (blkback, if it still holds it, gets I/O errors). */
export async function detachNbd(device: string, o: { host?: NbdHost; export?: string } = {}): Promise<void> {
  const host = o.host ?? realNbdHost();
  if (!/^\/dev\/nbd\d+$/.test(device.replace(host.dev, '/dev'))) throw new DiskError('bad-name', `${device} is not an nbd device`);
  try {
    await host.run('nbd-client', ['-d', device]);
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message?: string };
    throw new DiskError('qemu', `detaching ${device}${o.export ? ` (export ${o.export})` : ''}: nbd-client -d: ${nbdClientError(err.stderr ?? err.message ?? '', err.stdout ?? '')}`, { cause: e });
  }
}

async function disconnectQuietly(host: NbdHost, device: string): Promise<void> {
  try {
    await host.run('nbd-client', ['-d', device]);
  } catch {
    /* not connected */
  }
}
