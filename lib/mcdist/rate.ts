/**
 * Rate estimation and the server's rate limit.
 *
 * Both ends sample their byte counts every RATE_TICK_MS and fold the sample
 * into a weighted moving average. Clients report their receive rate in every
 * request; the server uses the mean of those reports to size its limit after
 * a loss. Time is passed in (milliseconds) so the logic is testable without
 * real clocks.
 */

export const RATE_TICK_MS = 10;

/** Exponentially weighted moving average of a byte rate, in bytes per second. */
export class RateEstimator {
  private bytes = 0;
  private lastTick: number;
  private rate = 0;

  /** @param weight share of the newest sample in the average (0 < weight <= 1). */
  constructor(now: number, private readonly weight = 0.25) {
    this.lastTick = now;
  }

  add(bytes: number): void {
    this.bytes += bytes;
  }

  /** Fold the bytes counted since the last tick into the average. */
  tick(now: number): void {
    const elapsed = now - this.lastTick;
    if (elapsed <= 0) return;
    const sample = (this.bytes * 1000) / elapsed;
    this.rate = this.weight * sample + (1 - this.weight) * this.rate;
    this.bytes = 0;
    this.lastTick = now;
  }

  get bytesPerSecond(): number {
    return this.rate;
  }
}

export interface RateLimitOptions {
  /** Starting limit, bytes/s. */
  initial: number;
  /** Never go below this (a cut must not stall the session), bytes/s. */
  floor: number;
  /** Never go above this, bytes/s. */
  ceiling: number;
  /** Linear increase per second, bytes/s per second. */
  increasePerSecond: number;
  /** A cut sets the limit to this share of the mean client receive rate. */
  cutFactor: number;
  /**
   * Ignore further losses for this long after a cut: requests already in
   * flight report losses that the cut has already answered, and cutting on
   * each of them would spiral the limit down to the floor.
   */
  cutHoldoffMs: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = {
  initial: 32 * 1024 * 1024,
  floor: 2 * 1024 * 1024,
  ceiling: 1024 * 1024 * 1024,
  increasePerSecond: 256 * 1024 * 1024,
  cutFactor: 0.75,
  cutHoldoffMs: 50,
};

/**
 * Additive increase, cut-to-measured-rate decrease, enforced as a token
 * bucket. The bucket holds at most two ticks' worth of bytes so an idle
 * period does not turn into a burst that overruns every client's socket.
 */
export class RateLimit {
  private limit: number;
  private tokens: number;
  private lastRefill: number;
  private lastCut = -Infinity;
  cuts = 0;

  constructor(now: number, private readonly opts: RateLimitOptions = DEFAULT_RATE_LIMIT) {
    this.limit = opts.initial;
    this.tokens = this.burst();
    this.lastRefill = now;
  }

  get bytesPerSecond(): number {
    return this.limit;
  }

  /** Linear increase, called every RATE_TICK_MS. */
  tick(elapsedMs: number): void {
    this.limit = Math.min(this.opts.ceiling, this.limit + (this.opts.increasePerSecond * elapsedMs) / 1000);
  }

  /**
   * A loss was seen. Returns whether the limit was cut (it is not within the
   * hold-off of a previous cut).
   */
  onLoss(now: number, meanClientRate: number): boolean {
    if (now - this.lastCut < this.opts.cutHoldoffMs) return false;
    this.lastCut = now;
    this.cuts++;
    const target = meanClientRate > 0 ? meanClientRate * this.opts.cutFactor : this.limit * this.opts.cutFactor;
    // A cut never raises the limit: clients that were idle report low rates, not spare capacity.
    this.limit = Math.max(this.opts.floor, Math.min(this.limit, target));
    this.tokens = Math.min(this.tokens, this.burst());
    return true;
  }

  /** Try to spend `bytes`; false means wait (see msUntil). */
  take(now: number, bytes: number): boolean {
    this.refill(now);
    if (this.tokens < bytes) return false;
    this.tokens -= bytes;
    return true;
  }

  /** Milliseconds until `bytes` tokens are available at the current limit. */
  msUntil(now: number, bytes: number): number {
    this.refill(now);
    const missing = bytes - this.tokens;
    return missing <= 0 ? 0 : (missing * 1000) / this.limit;
  }

  private burst(): number {
    return Math.max((this.limit * 2 * RATE_TICK_MS) / 1000, 64 * 1024);
  }

  private refill(now: number): void {
    const elapsed = now - this.lastRefill;
    if (elapsed <= 0) return;
    this.tokens = Math.min(this.burst(), this.tokens + (this.limit * elapsed) / 1000);
    this.lastRefill = now;
  }
}

/**
 * The clients' latest reported receive rates. Reports older than `staleMs`
 * are ignored: a client that has finished should not drag the mean down.
 */
export class ClientRates {
  private readonly rates = new Map<number, { rate: number; at: number }>();

  constructor(private readonly staleMs = 1000) {}

  report(clientId: number, bytesPerSecond: number, now: number): void {
    this.rates.set(clientId, { rate: bytesPerSecond, at: now });
  }

  mean(now: number): number {
    let sum = 0;
    let n = 0;
    for (const [id, r] of this.rates) {
      if (now - r.at > this.staleMs) {
        this.rates.delete(id);
        continue;
      }
      sum += r.rate;
      n++;
    }
    return n === 0 ? 0 : sum / n;
  }

  get size(): number {
    return this.rates.size;
  }
}
