// Guest programs that fork themselves through the sf_* API (images/testguest/programs), with the
// daemons of one test box in this process: a host daemon with the Xen backend serving every
// guest of the box over vchan (as `--vchan-all-guests` does), and where asked the master.
// Shared by 85.guest-api and 86.guest-api-hosts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon, type XenControl, type XenStore } from '../../lib/xen/native.js';
import { consoleLogDir, readConsole } from '../../lib/xen/console.js';
import { InternalClusterManager } from '../../lib/cluster/index.js';
import { HostDaemon } from '../../lib/daemon/host-daemon.js';
import { deriveHostKey } from '../../lib/daemon/host-key.js';
import { Master } from '../../lib/daemon/master.js';
import { MasterServer } from '../../lib/daemon/master-server.js';
import { VchanGuestTransport } from '../../lib/daemon/vchan-transport.js';
import { XenBackend } from '../../lib/daemon/xen-backend.js';
import type { BlockTransport } from '../../lib/clone/disk-transport.js';
import { serveAllDomains, type DomainWatch } from '../../lib/daemon/domain-watch.js';
import { destroyQuietly, openXen, startDebianGuest, startNodeGuest, waitUntil } from './helpers.js';

const RECORDS = '/local/domain/0/snowflock/daemon/clones';
const VCHANS = '/local/domain/0/data/vchan/snowflock';

export interface MasterHandle {
  port: number;
  /** Hosts whose daemons are registered. */
  hosts(): string[];
  close(): Promise<void>;
}

export async function startMaster(key: Buffer, host = '127.0.0.1'): Promise<MasterHandle> {
  const cluster = new InternalClusterManager({ ticketTtlMs: 600_000 });
  const master = new Master({ cluster, destroyTimeoutMs: 60_000, commandTimeoutMs: 600_000, buildTimeoutMs: 600_000 });
  const server = new MasterServer({ master, key, host, port: host === '127.0.0.1' ? 0 : 7311, heartbeatMs: 5000 });
  const { port } = await server.listen();
  return { port, hosts: () => master.connectedHosts(), close: async () => { await server.close(); await cluster.close(); } };
}

/** A master and this box's host daemon, both in this process: the single-host jobs' setup. */
export async function startSingleHost(): Promise<{ master: MasterHandle; box: JobHost }> {
  const key = randomBytes(32);
  const master = await startMaster(key);
  const box = new JobHost();
  await box.start({ host: 'box1', key, master: { host: '127.0.0.1', port: master.port }, advertise: '127.0.0.1', memoryMiB: 1024 });
  return { master, box };
}

export class JobHost {
  readonly xc: XenControl = openXen();
  readonly xs: XenStore = new (loadAddon().XenStore)();
  readonly events: string[] = [];
  private readonly parents: number[] = [];
  private readonly stateDir = mkdtempSync(join(tmpdir(), 'sf-guest-job-'));
  private readonly guests = new VchanGuestTransport({ log: (event, fields) => { this.events.push(`${event} ${JSON.stringify(fields ?? {})}`); } });
  private daemon: HostDaemon | null = null;
  private watch: DomainWatch | null = null;

  /** This box's host daemon: its clones' memservers are reached at `advertise`. */
  async start(o: { host: string; key: Buffer; master: { host: string; port: number }; advertise: string; memoryMiB: number; diskTransport?: BlockTransport }): Promise<void> {
    const hostKey = deriveHostKey(o.key, o.host); // o.key is the cluster key; this box proves its own
    this.daemon = new HostDaemon({
      host: o.host, hostKey, master: o.master,
      backend: new XenBackend(this.xc, this.xs, {
        advertiseHost: o.advertise, stateDir: this.stateDir, hostKey, ...(o.diskTransport ? { diskTransport: o.diskTransport } : {}),
        log: (event, fields) => { this.events.push(`${event} ${JSON.stringify(fields ?? {})}`); },
      }),
      guests: this.guests, capacity: { vcpus: 4, memoryMiB: o.memoryMiB }, masterSilenceMs: 600_000,
      log: (event, fields) => { this.events.push(`${event} ${JSON.stringify(fields ?? {})}`); },
    });
    await this.daemon.start();
    await this.daemon.whenRegistered();
    this.watch = serveAllDomains(() => this.liveDomids(), this.guests);
  }

  async close(): Promise<void> {
    this.watch?.stop();
    await this.daemon?.close();
    for (const domid of this.heldClones()) await destroyQuietly(this.xc, domid);
    for (const domid of this.parents) await destroyQuietly(this.xc, domid);
    rmSync(this.stateDir, { recursive: true, force: true });
    this.xs.close();
    this.xc.close();
  }

  heldClones(): number[] {
    return (this.xs.directory(RECORDS) ?? []).map(Number);
  }

  vchanEndpoints(): number[] {
    return (this.xs.directory(VCHANS) ?? []).map(Number).sort((a, b) => a - b);
  }

  liveDomids(): number[] {
    return this.xc.listDomains().map((d) => d.domid);
  }

  /**
   * Starts a Node guest running the program. The domain watch serves it within 2 s; Node needs
   * ~15 s (emulated) before it connects.
   */
  async startJob(name: string, workload: 'node' | 'shell', program: string, args: string[], o: { ip?: string } = {}): Promise<number> {
    const domid = await startNodeGuest(name, workload, program, args, o);
    this.parents.push(domid);
    return domid;
  }

  /** The Debian guest running `program` under the node workload, its root disk given by `disks` (xl disk specs). */
  async startDebianJob(name: string, program: string, args: string[], disks: string[]): Promise<number> {
    const domid = await startDebianGuest(name, program, disks, { workload: 'node', args });
    this.parents.push(domid);
    return domid;
  }

  /**
   * The parent goes, and with `domainsBefore` any domain the job left (a failed job's clones);
   * the domain watch closes their vchan servers. Tests call it pass or fail.
   */
  async endJob(parent: number, domainsBefore: number[] = []): Promise<void> {
    await destroyQuietly(this.xc, parent);
    if (!domainsBefore.length) return;
    for (const domid of this.liveDomids().filter((d) => !domainsBefore.includes(d))) await destroyQuietly(this.xc, domid);
  }

  /** The parent's last SF-JOB line once it matches `end`; fails early when the parent or a clone here dies. */
  async jobEnd(name: string, domid: number, end: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const state = (d: number) => {
      try {
        return this.xc.domainInfo(d).shutdownReason ?? 'running';
      } catch (e) {
        if ((e as { code?: string }).code === 'ESRCH') return 'gone'; // the daemon destroyed it meanwhile
        throw e;
      }
    };
    for (;;) {
      // complete lines only: xenconsoled may have logged part of the last one so far
      const line = readConsole(name).split('\n').slice(0, -1).filter((l) => end.test(l)).pop();
      if (line) return line;
      // A parent shut down for 'suspend' is being captured; any other shutdown ends it.
      const reason = state(domid);
      const crashed = this.heldClones().filter((c) => state(c) === 'crash');
      const gone = !['running', 'suspend'].includes(reason) || crashed.length > 0;
      if (gone || Date.now() > deadline) {
        assert.fail(`${gone ? `the parent domain ${reason}, crashed clones: ${crashed.join(',') || 'none'}` : `no ${end} within ${timeoutMs} ms`}; `
          + `parent:\n${consoleTail(name)}\nclones:\n${cloneLines(name).join('\n')}\ndaemon:\n${this.events.slice(-20).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** No clone domain, clone record or clone vchan server is left on this box. */
  async assertNothingLeft(parent: number | null, domainsBefore: number[]): Promise<void> {
    const expected = parent === null ? [] : [parent];
    assert.deepEqual(this.liveDomids().sort(), [...domainsBefore, ...expected].sort(), 'no clone domain is left');
    assert.deepEqual(this.heldClones(), [], 'no clone record is left');
    assert.deepEqual(await this.settledVchanEndpoints(expected), expected, 'dom0 serves a vchan only to the parent');
  }

  /**
   * The vchan servers once they match `expected`, or as they are after 10 s. The daemon closes a
   * destroyed clone's server just after the destroy: the close waits for the server's poll loop
   * to end before it removes the xenstore keys.
   */
  async settledVchanEndpoints(expected: number[] = []): Promise<number[]> {
    await waitUntil('the vchan servers to settle', () => this.vchanEndpoints().join() === expected.join(), 10_000).catch(() => {});
    return this.vchanEndpoints();
  }
}

/** The SF-JOB lines of every clone of `parentName` this box ran, from the consoles xenconsoled logged. */
export function cloneLines(parentName: string): string[] {
  return readdirSync(consoleLogDir())
    .filter((f) => f.startsWith(`guest-${parentName}-`))
    .flatMap((f) => readConsole(f.slice('guest-'.length, -'.log'.length)).split('\n'))
    .filter((l) => l.includes('SF-JOB'));
}

export function shares(lines: string[]): Map<number, bigint> {
  const found = new Map<number, bigint>();
  for (const l of lines) {
    const m = /SF-JOB share vmid=(\d+) of=(\d+) sum=(\d+)/.exec(l);
    if (m) found.set(Number(m[1]), BigInt(m[3]!));
  }
  return found;
}

export const gauss = (n: bigint) => (n * (n + 1n)) / 2n;

export const consoleTail = (name: string) => readConsole(name).split('\n').slice(-25).join('\n');

export const jobLines = (name: string) => readConsole(name).split('\n').filter((l) => l.includes('SF-JOB')).join('\n');

/**
 * Event channels and grants this process (the daemons) holds: each vchan server keeps an evtchn
 * and a gntalloc handle open, so leaked servers show as extra descriptors on /dev/xen.
 */
export function xenHandles(): string {
  const counts: Record<string, number> = {};
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target.startsWith('/dev/xen/')) counts[target] = (counts[target] ?? 0) + 1;
  }
  return JSON.stringify(Object.fromEntries(Object.entries(counts).sort()));
}
