/**
 * The master's conversation with the hosts of one fork: make it (capture on the parent's host,
 * build on every clone's host in parallel, start them all), release the parent, abort it, or
 * destroy its clones. Each step names the host and the clones that failed, so the error a parent
 * gets says where the fork broke. The books and the rules stay in master.ts.
 */
import type { Child, Fork } from './families.js';
import type { Log } from './host-commands.js';
import type { HostLink } from './master.js';
import type { EndReport } from './messages.js';

export interface ForkStepsOptions {
  /** The link to a host, or throws host-unavailable. */
  link: (host: string) => HostLink;
  /** The link to a host if it is connected. */
  connected: (host: string) => HostLink | undefined;
  /** A child got its domid: the master can now recognise it. */
  built: (fork: Fork, child: Child) => void;
  commandTimeoutMs: number;
  buildTimeoutMs: number;
  destroyTimeoutMs: number;
  log: Log;
}

export class ForkSteps {
  constructor(private readonly o: ForkStepsOptions) {}

  /** capture -> build -> start. Throws an Error saying which host and step failed. */
  async make(fork: Fork): Promise<void> {
    const parent = fork.family.parent;
    let image: Record<string, unknown>;
    try {
      image = (await this.o.link(parent.host).call('capture', { fork: fork.info, parent: parent.domid }, this.o.commandTimeoutMs)).image;
    } catch (e) {
      throw new Error(`capturing the parent on ${parent.host} failed: ${(e as Error).message}`);
    }
    await this.build(fork, image);
    await this.start(fork);
  }

  async releaseParent(fork: Fork): Promise<void> {
    const parent = fork.family.parent;
    try {
      await this.o.link(parent.host).call('release', { fork: fork.info, parent: parent.domid }, this.o.commandTimeoutMs);
    } catch (e) {
      // A host daemon that lost its link, or restarted, releases the parent by itself.
      this.o.log('release-failed', { fork: fork.ticket.id, host: parent.host, error: (e as Error).message });
    }
  }

  /**
   * The fork is over and none of its clones can still run: the parent's host lets go of what the
   * capture left there (the memserver, the disks' fronts and slice exports). Never throws.
   */
  async end(fork: Fork): Promise<void> {
    const host = fork.family.parent.host;
    const link = this.o.connected(host);
    if (!link) {
      this.o.log('end-failed', { fork: fork.ticket.id, host, error: 'host not connected' });
      return;
    }
    try {
      await link.call('end', { fork: fork.ticket.id }, this.o.commandTimeoutMs);
    } catch (e) {
      this.o.log('end-failed', { fork: fork.ticket.id, host, error: (e as Error).message });
    }
  }

  /**
   * Every host of the fork destroys its clones (now, or when their build ends) and releases the
   * parent if it holds it stopped. Hosts that are down destroy them when they register again.
   */
  async abort(fork: Fork): Promise<void> {
    const hosts = new Set([fork.family.parent.host, ...fork.children.map((c) => c.host)]);
    await Promise.all([...hosts].map(async (host) => {
      try {
        const r = await this.o.link(host).call('abort', { fork: fork.ticket.id }, this.o.commandTimeoutMs);
        for (const c of fork.children) if (c.host === host && c.domid !== null && r.destroyed.includes(c.domid)) c.state = 'destroyed';
      } catch (e) {
        this.o.log('abort-failed', { fork: fork.ticket.id, host, error: (e as Error).message });
      }
    }));
  }

  /**
   * Asks each host holding a built child to destroy it, waiting at most destroyTimeoutMs per
   * host. Children of a host that is down are lost. Returns the ones not confirmed.
   */
  async destroy(fork: Fork): Promise<EndReport['unconfirmed']> {
    const unconfirmed: EndReport['unconfirmed'] = [];
    const targets = fork.children.filter((c) => c.domid !== null && c.state !== 'lost' && c.state !== 'destroyed');
    await Promise.all([...byHost(targets)].map(async ([host, children]) => {
      const link = this.o.connected(host);
      if (!link) {
        for (const c of children) c.state = 'lost';
        return;
      }
      try {
        const r = await link.call('destroy', { domids: children.map((c) => c.domid!) }, this.o.destroyTimeoutMs);
        for (const c of children) {
          if (r.destroyed.includes(c.domid!)) c.state = 'destroyed';
          else unconfirmed.push({ vmid: c.vmid, host, reason: r.failed.find((f) => f.domid === c.domid)?.message ?? 'not reported' });
        }
      } catch (e) {
        for (const c of children) {
          if (c.state !== 'lost') unconfirmed.push({ vmid: c.vmid, host, reason: (e as Error).message });
        }
      }
    }));
    return unconfirmed;
  }

  private async build(fork: Fork, image: Record<string, unknown>): Promise<void> {
    await allOrReport([...byHost(fork.children)].map(async ([host, children]) => {
      const vmids = children.map((c) => c.vmid);
      const which = `clone${vmids.length > 1 ? 's' : ''} ${vmids.join(', ')}`;
      let built;
      try {
        built = await this.o.link(host).call('build', { fork: fork.info, image, vmids }, this.o.buildTimeoutMs);
      } catch (e) {
        throw new Error(`building ${which} on ${host} failed: ${(e as Error).message}`);
      }
      for (const b of built.clones) {
        const child = children.find((c) => c.vmid === b.vmid && c.domid === null);
        if (!child) continue;
        child.domid = b.domid;
        if (child.state === 'building') this.o.built(fork, child);
      }
      const missing = children.filter((c) => c.domid === null).map((c) => c.vmid);
      if (missing.length > 0) throw new Error(`${host} did not build clone${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
    }));
  }

  private async start(fork: Fork): Promise<void> {
    await allOrReport([...byHost(fork.children)].map(async ([host, children]) => {
      try {
        await this.o.link(host).call('start', { domids: children.map((c) => c.domid!) }, this.o.commandTimeoutMs);
      } catch (e) {
        throw new Error(`starting clones on ${host} failed: ${(e as Error).message}`);
      }
      for (const c of children) if (c.state === 'building') c.state = 'running';
    }));
  }
}

/** Waits for every host's step; if any failed, throws one error listing them all. */
async function allOrReport(steps: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(steps);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as Error).message);
  if (failures.length > 0) throw new Error(failures.join('; '));
}

function byHost(children: Child[]): Map<string, Child[]> {
  const m = new Map<string, Child[]>();
  for (const c of children) m.set(c.host, [...(m.get(c.host) ?? []), c]);
  return m;
}
