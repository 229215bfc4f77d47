/**
 * The client's retransmit timeout, RFC 6298 style: a smoothed reply time plus
 * four deviations, never below the session's timeout (the server's lockstep
 * window is that long, and a retransmission inside it would be ignored) and
 * never above `maxFactor` times it, so recovery from a real loss stays quick
 * even after a slow patch.
 */
export class RetransmitTimer {
  private srtt: number | null = null;
  private rttvar = 0;
  private current: number;

  constructor(private readonly minMs: number, private readonly maxFactor = 8) {
    this.current = minMs;
  }

  get ms(): number {
    return this.current;
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
    this.current = Math.min(this.minMs * this.maxFactor, Math.max(this.minMs, this.srtt + 4 * this.rttvar));
  }
}
