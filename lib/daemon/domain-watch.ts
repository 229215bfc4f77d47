/**
 * Serves every guest of this host without naming them (`--vchan-all-guests`): polls the
 * hypervisor's domain list and admits each new domain to the guest transport, dismissing the
 * ones that went away. Polling, not a xenstore watch: a missed @introduceDomain would leave a
 * guest unserved for good, a poll catches up within one period.
 */
import type { GuestTransport } from './guest-transport.js';

export interface DomainWatch {
  stop(): void;
}

export function serveAllDomains(listDomids: () => number[], guests: GuestTransport, periodMs = 2000): DomainWatch {
  const served = new Set<number>();
  const poll = () => {
    let now: Set<number>;
    try {
      now = new Set(listDomids().filter((d) => d !== 0)); // dom0 is the server, not a guest
    } catch {
      return; // the hypervisor did not answer this time; try again next period
    }
    for (const d of now) if (!served.has(d)) { served.add(d); guests.admit?.(d); }
    for (const d of served) if (!now.has(d)) { served.delete(d); guests.dismiss?.(d); }
  };
  poll();
  const timer = setInterval(poll, periodMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
