/**
 * A host daemon's side of the master's commands: runs them on the CloneBackend and keeps what
 * this host is responsible for (its clones, the parents it stopped), so that nothing is left
 * behind when a fork fails or the master goes away: parents are released, and clones that
 * finish building for a fork that was aborted (or for a master no longer listening) are
 * destroyed at once.
 */
import type { CloneBackend, ForkInfo, HeldClone } from './backend.js';
import { SfError } from './errors.js';
import type { HostCommands, HostResults } from './messages.js';

export type Log = (event: string, detail?: Record<string, unknown>) => void;

/** Aborted fork ids are remembered this long (a build can end long after its abort). */
const ABORTED_MEMORY = 1024;

export class HostCommandRunner {
  /** Clones on this host, by domid. */
  readonly clones = new Map<number, HeldClone>();
  /** Parents stopped by capture and not yet released, with their fork. */
  private readonly stopped = new Map<number, ForkInfo>();
  private readonly aborted = new Set<string>();
  /** Clones whose destroy is under way: seen shutting down, they have not died. */
  private readonly destroying = new Set<number>();
  /** Bumped when the master link is lost: work started under an older link is orphaned. */
  private epoch = 0;

  constructor(
    private readonly backend: CloneBackend,
    private readonly log: Log = () => {},
    /** Called for each clone built here (a vchan transport starts serving its domain)... */
    private readonly admit: (domid: number) => void = () => {},
    /** ...and for each one destroyed. */
    private readonly dismiss: (domid: number) => void = () => {},
  ) {}

  async recover(): Promise<void> {
    for (const c of await this.backend.recover()) this.clones.set(c.domid, c);
  }

  async run<K extends keyof HostCommands>(type: K, body: HostCommands[K]): Promise<HostResults[K]> {
    return (await this.dispatch(type, body as never)) as HostResults[K];
  }

  /** The master link dropped: no fork in progress can finish, so stopped parents run again. */
  async linkLost(): Promise<void> {
    this.epoch++;
    const parents = [...this.stopped.entries()];
    this.stopped.clear();
    await Promise.all(parents.map(async ([domid, fork]) => {
      await this.release(domid, fork, 'master link lost');
      await this.abandon(fork.fork);
    }));
  }

  async destroy(domids: number[]): Promise<HostResults['destroy']> {
    const destroyed: number[] = [];
    const failed: { domid: number; message: string }[] = [];
    await Promise.all(domids.map(async (domid) => {
      if (!this.clones.has(domid)) {
        failed.push({ domid, message: `domain ${domid} is not a clone held by this host` });
        return;
      }
      this.destroying.add(domid);
      try {
        await this.backend.destroy(domid);
        this.clones.delete(domid);
        this.dismiss(domid);
        destroyed.push(domid);
      } catch (e) {
        failed.push({ domid, message: (e as Error).message.slice(0, 1000) });
      } finally {
        this.destroying.delete(domid);
      }
    }));
    return { destroyed, failed };
  }

  /** True while this host is destroying the clone (so its stopping is no death to report). */
  beingDestroyed(domid: number): boolean {
    return this.destroying.has(domid);
  }

  private async dispatch(type: keyof HostCommands, body: HostCommands[keyof HostCommands]): Promise<unknown> {
    switch (type) {
      case 'ping':
        return {};
      case 'capture':
        return this.capture(body as HostCommands['capture']);
      case 'build':
        return this.build(body as HostCommands['build']);
      case 'start': {
        const b = body as HostCommands['start'];
        const unknown = b.domids.filter((d) => !this.clones.has(d));
        if (unknown.length > 0) throw new SfError('bad-request', `not clones of this host: ${unknown.join(', ')}`, 'domids');
        await this.backend.start(b.domids);
        return {};
      }
      case 'release': {
        const b = body as HostCommands['release'];
        await this.backend.release(b.parent, b.fork);
        this.stopped.delete(b.parent);
        return {};
      }
      case 'destroy':
        return this.destroy((body as HostCommands['destroy']).domids);
      case 'abort':
        return this.abort((body as HostCommands['abort']).fork);
      case 'end':
        await this.abandon((body as HostCommands['end']).fork);
        return {};
    }
  }

  private async capture(b: HostCommands['capture']): Promise<HostResults['capture']> {
    const epoch = this.epoch;
    const image = await this.backend.capture(b.parent, b.fork);
    if (epoch !== this.epoch || this.aborted.has(b.fork.fork)) {
      await this.release(b.parent, b.fork, 'fork aborted during capture');
      await this.abandon(b.fork.fork);
      throw new SfError('clone-failed', 'the fork was abandoned while its parent was being captured');
    }
    this.stopped.set(b.parent, b.fork);
    return { image };
  }

  private async build(b: HostCommands['build']): Promise<HostResults['build']> {
    const epoch = this.epoch;
    const built = await this.backend.build(b.image, b.fork, b.vmids);
    for (const c of built) {
      this.clones.set(c.domid, { domid: c.domid, fork: b.fork.fork, vmid: c.vmid });
      this.admit(c.domid);
    }
    if (epoch !== this.epoch || this.aborted.has(b.fork.fork)) {
      // Nobody will start these: the fork was aborted, or the master that asked is gone.
      await this.destroy(built.map((c) => c.domid));
      this.log('orphans-destroyed', { fork: b.fork.fork, domids: built.map((c) => c.domid) });
      throw new SfError('clone-failed', 'the fork was abandoned while its clones were being built');
    }
    return { clones: built };
  }

  private async abort(fork: string): Promise<HostResults['abort']> {
    this.aborted.add(fork);
    if (this.aborted.size > ABORTED_MEMORY) this.aborted.delete(this.aborted.values().next().value!);
    for (const [domid, f] of this.stopped) if (f.fork === fork) await this.release(domid, f, 'fork aborted');
    await this.abandon(fork);
    return this.destroy([...this.clones.values()].filter((c) => c.fork === fork).map((c) => c.domid));
  }

  /** What the fork's capture left here (memory server, the parent's memory) goes; never throws. */
  private async abandon(fork: string): Promise<void> {
    try {
      await this.backend.abandon?.(fork);
    } catch (e) {
      this.log('abandon-failed', { fork, error: (e as Error).message });
    }
  }

  private async release(domid: number, fork: ForkInfo, why: string): Promise<void> {
    this.stopped.delete(domid);
    try {
      await this.backend.release(domid, fork);
      this.log('parent-released', { domid, fork: fork.fork, why });
    } catch (e) {
      this.log('release-failed', { domid, fork: fork.fork, error: (e as Error).message });
    }
  }
}
