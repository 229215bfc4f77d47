// --vchan-all-guests: every domain but dom0 is admitted as it appears and dismissed when it goes;
// a failed listing changes nothing.
import { describe, expect, it, vi } from 'vitest';
import { serveAllDomains } from '../../../lib/daemon/domain-watch.js';

describe('serveAllDomains', () => {
  it('admits new domains, dismisses vanished ones, never dom0, and rides out a failed listing', () => {
    vi.useFakeTimers();
    try {
      const events: string[] = [];
      let domains: number[] | null = [0, 3, 5];
      const watch = serveAllDomains(() => { if (!domains) throw new Error('xc down'); return domains; }, {
        listen: async () => {}, close: async () => {},
        admit: (d) => events.push(`+${d}`), dismiss: (d) => events.push(`-${d}`),
      }, 1000);
      expect(events).toEqual(['+3', '+5']);
      domains = null;
      vi.advanceTimersByTime(1000);
      expect(events).toEqual(['+3', '+5']);
      domains = [0, 5, 8];
      vi.advanceTimersByTime(1000);
      expect(events).toEqual(['+3', '+5', '+8', '-3']);
      watch.stop();
      domains = [0];
      vi.advanceTimersByTime(5000);
      expect(events).toHaveLength(4);
    } finally {
      vi.useRealTimers();
    }
  });
});
