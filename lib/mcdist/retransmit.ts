/**
 * The client's retransmit timeout, RFC 6298 style: a smoothed reply time plus
 * four deviations, never below the session's timeout (the server's lockstep
 * window) and at most `maxFactor` times it. A reply time includes the time
 * the reply waited in a busy client's socket buffer, so a client that falls
 * behind asks again less often instead of adding to the load it cannot keep
 * up with.
 */
export class RetransmitTimer {
  private srtt: number | null = null;
  private rttvar = 0;
  private current: number;
  private readonly maxMs: number;

  constructor(private readonly minMs: number, maxFactor = 25) {
    this.current = minMs;
    this.maxMs = minMs * maxFactor;
  }

  /** Timeout for a first request. */
  get ms(): number {
    return this.current;
  }

  /**
   * A request timed out: back the timer off until the next sample (RFC 6298
   * 5.5). Without this, a client whose every request times out would never
   * get a clean sample (Karn) and would keep retransmitting at the minimum.
   */
  onTimeout(): void {
    this.current = Math.min(this.maxMs, this.current * 2);
  }

  /** A reply took `ms` after its (only) request. */
  sample(ms: number): void {
    if (this.srtt === null) {
      this.srtt = ms;
      this.rttvar = ms / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
      this.srtt = 0.875 * this.srtt + 0.125 * ms;
    }
    this.current = Math.min(this.maxMs, Math.max(this.minMs, this.srtt + 4 * this.rttvar));
  }
}
