/**
 * "Wake me when this becomes true": the master's books change in many places (a child exits,
 * a host drops, a kill starts), and join waits for a condition over them. Every change calls
 * notify(); each waiter re-checks its own condition.
 */
export class Notifier {
  private waiters = new Set<{ ready: () => boolean; resolve: () => void }>();

  /** Resolves once ready() holds; rejects with the signal's reason if it aborts first. */
  wait(ready: () => boolean, signal?: AbortSignal): Promise<void> {
    if (ready()) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const w = { ready, resolve: () => { signal?.removeEventListener('abort', onAbort); resolve(); } };
      const onAbort = () => {
        this.waiters.delete(w);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(w);
    });
  }

  notify(): void {
    for (const w of this.waiters) {
      if (w.ready()) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }
}
