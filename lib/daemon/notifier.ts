/**
 * "Wake me when this becomes true": the master's books change in many places (a child exits,
 * a host drops, a kill starts), and join waits for a condition over them. Every change calls
 * notify(); each waiter re-checks its own condition.
 */
export class Notifier {
  private waiters = new Set<{ ready: () => boolean; resolve: () => void }>();

  wait(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.add({ ready, resolve }));
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
