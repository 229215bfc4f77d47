// The frame of a guest job over two boxes (86.guest-api-hosts, 68.disk-api-hosts): box 1 runs
// the master and its host daemon, box 2 its host daemon; box 2 gets the cluster key over the side
// channel (side-channel.ts) and, when box 1's parent has joined, reports what it saw and holds.
import { randomBytes } from 'node:crypto';
import { waitUntil } from './helpers.js';
import type { BlockTransport } from '../../lib/clone/disk-transport.js';
import { JobHost, cloneLines, consoleTail, jobLines, startMaster, type MasterHandle } from './guest-job.js';
import { joinSide, serveSide, type SideServer } from './side-channel.js';

export const BOX1 = '10.99.0.1';
export const BOX2 = '10.99.0.2';
const MASTER_PORT = 7311;

export class TwoBoxJob<R> {
  private master: MasterHandle | undefined;
  private side: SideServer<R> | undefined;
  box: JobHost | undefined;

  /** `memoryMiB`: what each box's daemon offers, so that the manager spreads the clones over both. */
  constructor(private readonly sidePort: number, private readonly memoryMiB: number, private readonly o: { diskTransport?: BlockTransport } = {}) {}

  /** Box 1: the master and this box's daemon, box 2 registered, then `job`; box 2 hears when it fails. */
  async runBox1(job: (box: JobHost) => Promise<void>): Promise<void> {
    const key = randomBytes(32);
    this.side = serveSide<R>(BOX1, this.sidePort, key);
    try {
      this.master = await startMaster(key, BOX1);
      this.box = new JobHost();
      await this.box.start({ host: 'box1', key, master: { host: BOX1, port: this.master.port }, advertise: BOX1, memoryMiB: this.memoryMiB, ...this.o });
      await this.side.box2;
      await waitUntil('box 2 to register with the master', () => this.master!.hosts().includes('box2'), 600_000);
      await job(this.box);
    } catch (e) {
      this.side.abort(`box 1 failed: ${(e as Error).message}`);
      throw e;
    }
  }

  /**
   * Box 1, once its parent `name` printed its last SF-JOB line: that line, the parent's SF-JOB
   * lines, box 2's report and every clone's SF-JOB lines (both boxes'), with a context for failures.
   */
  async ended(t: { diagnostic: (s: string) => void }, box: JobHost, name: string, parent: number): Promise<{ end: string; parentLines: string; there: R & { lines: string[] }; lines: string[]; context: string }> {
    const end = await box.jobEnd(name, parent, /SF-JOB (joined|killed|error)/, 1_200_000);
    const parentLines = jobLines(name);
    t.diagnostic(parentLines);
    const there = await this.side!.report(name) as R & { lines: string[] };
    const lines = [...cloneLines(name), ...there.lines];
    return { end, parentLines, there, lines, context: `parent:\n${consoleTail(name)}\nclones:\n${lines.join('\n')}` };
  }

  /** Box 2: its daemon joins box 1's master; when box 1 asks, it sends what `report` says. */
  async runBox2(report: (box: JobHost, parentName: string) => Promise<R>): Promise<void> {
    // Box 1 runs the single-host suites first: that takes many minutes under TCG.
    const side = await joinSide<R>(BOX1, this.sidePort, 1_500_000);
    this.box = new JobHost();
    await this.box.start({ host: 'box2', key: side.key, master: { host: BOX1, port: MASTER_PORT }, advertise: BOX2, memoryMiB: this.memoryMiB, ...this.o });
    const parentName = await side.reportRequested();
    side.send(await report(this.box, parentName));
  }

  async close(): Promise<void> {
    this.side?.close();
    await this.box?.close();
    await this.master?.close();
  }
}
