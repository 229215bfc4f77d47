/**
 * An in-memory CloneBackend: domains are records, a fork copies the parent's record. It keeps
 * the guarantees of backend.ts (parent stopped between capture and release, clones paused until
 * start, all-or-nothing build, only clones destroyed), so the daemons can be tested without Xen.
 * Hooks let a test hold or fail a step, or run a simulated child program when a clone starts.
 */
import type { BuiltClone, CloneBackend, DomainSize, ForkImage, ForkInfo, HeldClone } from './backend.js';

export type FakeState = 'running' | 'stopped' | 'building' | 'paused' | 'crashed';

export interface FakeDomain {
  domid: number;
  kind: 'parent' | 'clone';
  state: FakeState;
  size: DomainSize;
  fork?: string;
  vmid?: number;
  /** a clone's one vif, off the bridge until releaseNetwork */
  networkHeld?: boolean;
}

export interface FakeHooks {
  /** Runs inside build after the domains exist (state "building"); throw to fail the build. */
  beforeBuild?: (fork: ForkInfo, vmids: number[]) => Promise<void>;
  /** Runs before a clone is destroyed; hang to simulate a host that does not confirm. */
  beforeDestroy?: (domid: number) => Promise<void>;
  /** Called when clones start: a test runs their guest programs from here. */
  onStart?: (clones: FakeDomain[]) => void;
}

export class FakeBackend implements CloneBackend {
  readonly domains = new Map<number, FakeDomain>();
  hooks: FakeHooks = {};
  /** Forks abandon() was called for, in order. */
  readonly abandoned: string[] = [];
  private nextDomid: number;

  constructor(readonly name: string, firstCloneDomid = 100) {
    this.nextDomid = firstCloneDomid;
  }

  addParent(domid: number, size: DomainSize = { vcpus: 1, memoryMiB: 256 }): void {
    this.domains.set(domid, { domid, kind: 'parent', state: 'running', size });
  }

  clones(): FakeDomain[] {
    return [...this.domains.values()].filter((d) => d.kind === 'clone');
  }

  async describe(domid: number): Promise<DomainSize> {
    return { ...this.domain(domid).size };
  }

  async capture(parent: number, fork: ForkInfo): Promise<ForkImage> {
    const d = this.domain(parent);
    if (d.state !== 'running') throw new Error(`${this.name}: domain ${parent} is ${d.state}, cannot capture it`);
    d.state = 'stopped';
    return { fake: true, host: this.name, parent, fork: fork.fork, vcpus: d.size.vcpus, memoryMiB: d.size.memoryMiB };
  }

  async build(image: ForkImage, fork: ForkInfo, vmids: number[]): Promise<BuiltClone[]> {
    const size = { vcpus: Number(image.vcpus), memoryMiB: Number(image.memoryMiB) };
    const built = vmids.map((vmid) => {
      const domid = this.nextDomid++;
      this.domains.set(domid, { domid, kind: 'clone', state: 'building', size, fork: fork.fork, vmid, networkHeld: true });
      return { vmid, domid };
    });
    try {
      await this.hooks.beforeBuild?.(fork, vmids);
    } catch (e) {
      for (const b of built) this.domains.delete(b.domid);
      throw e;
    }
    for (const b of built) {
      const d = this.domains.get(b.domid);
      if (d) d.state = 'paused';
    }
    return built.filter((b) => this.domains.has(b.domid));
  }

  async start(domids: number[]): Promise<void> {
    const started = domids.map((id) => {
      const d = this.domain(id);
      if (d.kind !== 'clone' || d.state !== 'paused') throw new Error(`${this.name}: domain ${id} is not a paused clone`);
      return d;
    });
    for (const d of started) d.state = 'running';
    this.hooks.onStart?.(started);
  }

  async releaseNetwork(domid: number): Promise<string[]> {
    const d = this.domains.get(domid);
    if (d?.kind !== 'clone' || !d.networkHeld) return [];
    d.networkHeld = false;
    return [`vif${domid}.0`];
  }

  async release(parent: number): Promise<void> {
    const d = this.domains.get(parent);
    if (d?.state === 'stopped') d.state = 'running';
  }

  async abandon(fork: string): Promise<void> {
    this.abandoned.push(fork);
  }

  async destroy(domid: number): Promise<void> {
    const d = this.domains.get(domid);
    if (!d) return;
    if (d.kind !== 'clone') throw new Error(`${this.name}: refusing to destroy domain ${domid}: it is not a clone`);
    await this.hooks.beforeDestroy?.(domid);
    this.domains.delete(domid);
  }

  ended(domid: number): string | null {
    const d = this.domains.get(domid);
    if (!d) return 'gone';
    return d.state === 'crashed' ? 'crash' : null;
  }

  /** A test's way to make a clone crash. */
  crash(domid: number): void {
    this.domain(domid).state = 'crashed';
  }

  async recover(): Promise<HeldClone[]> {
    for (const d of this.domains.values()) if (d.kind === 'parent' && d.state === 'stopped') d.state = 'running';
    return this.clones().map((d) => ({ domid: d.domid, fork: d.fork!, vmid: d.vmid! }));
  }

  private domain(domid: number): FakeDomain {
    const d = this.domains.get(domid);
    if (!d) throw new Error(`${this.name}: no domain ${domid}`);
    return d;
  }
}
