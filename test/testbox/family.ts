// A fork family for the descriptor suites: a running PVH (or PV) parent, its descriptor and memory
// image, the clones made from it, and cleanup of all of it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadAddon, type XenStore } from '../../lib/xen/native.js';
import { waitForConsole, readConsole } from '../../lib/xen/console.js';
import { captureDescriptor, type CaptureResult } from '../../lib/descriptor/capture.js';
import { destroyClone, restoreDescriptor, type Restored } from '../../lib/descriptor/restore.js';
import type { Descriptor } from '../../lib/descriptor/format.js';
import { destroyQuietly, openXen, startTestGuest } from './helpers.js';

export class Family {
  readonly xc = openXen();
  readonly xs: XenStore = new (loadAddon().XenStore)();
  readonly work = mkdtempSync(join(tmpdir(), 'sf-family-'));
  readonly parentName = `sf-parent-${process.pid}`;
  readonly image = join(this.work, 'parent.mem');
  readonly clones: Restored[] = [];
  parent: number | undefined;
  descriptor!: Descriptor;
  /** the parent's last count before it was suspended */
  countAtSuspend = -1;
  resumeParent: () => void = () => {};

  constructor(readonly type: 'pvh' | 'pv' = 'pvh') {}

  async startParent(): Promise<void> {
    this.parent = await startTestGuest(this.parentName, this.type);
    await waitForConsole(this.parentName, /SF-COUNT \d+ vmid=0/, 120_000, 2);
  }

  /**
   * Captures the parent. With an image it stays stopped until resumeParent() (the family
   * starts together); without one it resumes at once.
   */
  async captureParent(withImage = true): Promise<CaptureResult> {
    const r = await captureDescriptor(this.xc, this.xs, this.parent!, withImage ? { memoryImage: this.image, keepParentStopped: true } : {});
    this.resumeParent = r.resumeParent;
    this.descriptor = r.descriptor;
    this.countAtSuspend = Math.max(...this.counts(this.parentName, 0));
    return r;
  }

  /** The SF-COUNT values a guest printed with this vmid. */
  counts(name: string, vmid: number): number[] {
    return [...readConsole(name).matchAll(new RegExp(`SF-COUNT (\\d+) vmid=${vmid}\\b`, 'g'))].map((m) => Number(m[1]));
  }

  /**
   * Builds clones with these vmids paused, resumes the parent and starts them; asserts each
   * continues the parent's count with its own vmid, resumed (not booted), and the parent runs on.
   */
  async runClones(vmids: number[], diagnostic: (s: string) => void = () => {}): Promise<void> {
    for (const vmid of vmids) {
      this.clones.push(await restoreDescriptor(this.xc, this.xs, this.descriptor, { memoryImage: this.image, vmid, name: `${this.parentName}-c${vmid}`, start: false }));
      diagnostic(`clone ${vmid} built paused: ${this.xc.physinfo().freePages} pages free`);
    }
    this.resumeParent();
    for (const c of this.clones) this.xc.unpause(c.domid);
    assert.equal(this.xc.domainInfo(this.parent!).shutdownReason, undefined, 'parent resumed');
    await waitForConsole(this.parentName, new RegExp(`SF-COUNT ${this.countAtSuspend + 2} vmid=0`), 60_000);
    for (const c of this.clones) {
      await waitForConsole(c.name, new RegExp(`SF-COUNT \\d+ vmid=${c.vmid}`), 120_000, 2);
      const seen = this.counts(c.name, c.vmid);
      assert.ok(Math.min(...seen) >= this.countAtSuspend, `clone ${c.vmid} counts ${seen} continue from ${this.countAtSuspend}, not from 0`);
      assert.doesNotMatch(readConsole(c.name), /SF-AGENT up/, 'the clone resumed; it did not boot');
      const info = this.xc.domainInfo(c.domid);
      assert.equal(info.type, this.type);
      assert.equal(info.shutdownReason, undefined);
    }
    const xl = execFileSync('xl', ['list'], { encoding: 'utf8' });
    for (const c of this.clones) assert.match(xl, new RegExp(`^${c.name}\\s+${c.domid}\\s`, 'm'));
    // The parent is untouched by its clones.
    const before = Math.max(...this.counts(this.parentName, 0));
    await waitForConsole(this.parentName, new RegExp(`SF-COUNT ${before + 1} vmid=0`), 60_000);
  }

  /** Captures the first clone and restores a grandchild (vmid 3) that continues its count. */
  async cloneOfAClone(): Promise<void> {
    const first = this.clones[0]!;
    const second = join(this.work, 'clone.mem');
    const r = await captureDescriptor(this.xc, this.xs, first.domid, { memoryImage: second, keepParentStopped: true });
    const atSave = Math.max(...this.counts(first.name, 1));
    const grand = await restoreDescriptor(this.xc, this.xs, r.descriptor, { memoryImage: second, vmid: 3, name: `${this.parentName}-gc`, start: false });
    this.clones.push(grand);
    r.resumeParent();
    this.xc.unpause(grand.domid);
    await waitForConsole(grand.name, /SF-COUNT \d+ vmid=3/, 120_000, 2);
    const grandCounts = this.counts(grand.name, 3);
    assert.ok(Math.min(...grandCounts) >= atSave - 1, `grandchild counts ${grandCounts} continue from ${atSave}`);
    await waitForConsole(first.name, new RegExp(`SF-COUNT ${atSave + 1} vmid=1`), 60_000);
    rmSync(second);
  }

  async dispose(): Promise<void> {
    this.resumeParent();
    for (const c of this.clones) await destroyClone(this.xc, this.xs, c.domid, c.uuid).catch(() => {});
    await destroyQuietly(this.xc, this.parent);
    this.xs.close();
    this.xc.close();
    rmSync(this.work, { recursive: true, force: true });
  }
}
