// A fork family for the descriptor suites: a running PVH parent, its descriptor and memory
// image, the clones made from it, and cleanup of all of it.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadAddon, type XenStore } from '../../lib/xen/native.js';
import { waitForConsole, readConsole } from '../../lib/xen/console.js';
import { captureDescriptor, type CaptureResult } from '../../lib/descriptor/capture.js';
import { destroyClone, type Restored } from '../../lib/descriptor/restore.js';
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

  async startParent(): Promise<void> {
    this.parent = await startTestGuest(this.parentName, 'pvh');
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

  async dispose(): Promise<void> {
    this.resumeParent();
    for (const c of this.clones) await destroyClone(this.xc, this.xs, c.domid, c.uuid).catch(() => {});
    await destroyQuietly(this.xc, this.parent);
    this.xs.close();
    this.xc.close();
    rmSync(this.work, { recursive: true, force: true });
  }
}
