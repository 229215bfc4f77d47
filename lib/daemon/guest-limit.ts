/**
 * Each guest's own share of a link: at most `max` of its requests in progress at once, counted
 * across all its connections, so one guest that floods (or reconnects and asks again) is told
 * `busy` while the others are still served.
 */
import { SfError } from './errors.js';

/** Requests of one guest in progress at once, at its host daemon and at the master alike. */
export const MAX_REQUESTS_PER_GUEST = 8;

export class GuestLimit {
  private readonly counts = new Map<number, number>();

  constructor(private readonly max = MAX_REQUESTS_PER_GUEST) {}

  async run<T>(domid: number, work: () => Promise<T>): Promise<T> {
    const n = this.counts.get(domid) ?? 0;
    if (n >= this.max) throw new SfError('busy', `domain ${domid} already has ${n} requests in progress (at most ${this.max})`);
    this.counts.set(domid, n + 1);
    try {
      return await work();
    } finally {
      const left = this.counts.get(domid)! - 1;
      if (left > 0) this.counts.set(domid, left);
      else this.counts.delete(domid);
    }
  }
}
