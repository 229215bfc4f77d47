/**
 * Replay protection for requests. The MAC proves a request came from a holder of the session
 * key, not that it is new: anyone on the path could send a recorded request again, and each
 * replay would make the server multicast a block (and a replayed "lost" request would cut its
 * rate). So each client numbers its requests 1, 2, ... and the server takes each number once,
 * in a sliding window per client (IPsec's anti-replay window, RFC 4303 section 3.4.3): numbers
 * that overtook each other still pass, numbers older than the window do not.
 */

/** Request numbers a client may send out of order. */
export const REPLAY_WINDOW = 256;
/**
 * Clients remembered per session. Only requests that verify under the key make an entry, so
 * this bounds memory against a client that changes its id, not against outsiders; a forgotten
 * client's old requests would pass again, so it is far above any family's size.
 */
export const MAX_CLIENTS = 4096;

interface Window {
  highest: number;
  /** seen[n % REPLAY_WINDOW] for the numbers highest - REPLAY_WINDOW + 1 .. highest */
  seen: Uint8Array;
}

export class ReplayGuard {
  /** By client id, least recently admitted first. */
  private readonly windows = new Map<number, Window>();

  constructor(private readonly maxClients = MAX_CLIENTS) {}

  get clients(): number {
    return this.windows.size;
  }

  /** Whether request `counter` of `clientId` is new; records it if so. 0 is never valid. */
  admit(clientId: number, counter: number): boolean {
    if (counter <= 0) return false;
    const w = this.windows.get(clientId) ?? { highest: 0, seen: new Uint8Array(REPLAY_WINDOW) };
    if (counter > w.highest) {
      // Slots between the old and the new highest now stand for numbers not yet seen.
      if (counter - w.highest >= REPLAY_WINDOW) w.seen.fill(0);
      else for (let n = w.highest + 1; n < counter; n++) w.seen[n % REPLAY_WINDOW] = 0;
      w.highest = counter;
    } else if (w.highest - counter >= REPLAY_WINDOW || w.seen[counter % REPLAY_WINDOW]) {
      return false;
    }
    w.seen[counter % REPLAY_WINDOW] = 1;
    this.remember(clientId, w);
    return true;
  }

  private remember(clientId: number, w: Window): void {
    this.windows.delete(clientId);
    if (this.windows.size >= this.maxClients) this.windows.delete(this.windows.keys().next().value!);
    this.windows.set(clientId, w);
  }
}
