import { describe, expect, it } from 'vitest';
import { ClientRates, DEFAULT_RATE_LIMIT, RATE_TICK_MS, RateEstimator, RateLimit } from '../../../lib/mcdist/rate.js';
import { RetransmitTimer } from '../../../lib/mcdist/retransmit.js';

const MiB = 1024 * 1024;

describe('RateEstimator', () => {
  it('converges on a steady rate', () => {
    const r = new RateEstimator(0);
    // 10 KiB every 10 ms is 1000 KiB/s.
    for (let t = RATE_TICK_MS; t <= 1000; t += RATE_TICK_MS) {
      r.add(10 * 1024);
      r.tick(t);
    }
    expect(r.bytesPerSecond).toBeCloseTo(1000 * 1024, -1);
  });

  it('weights the newest sample by the given weight', () => {
    const r = new RateEstimator(0, 0.25);
    r.add(1000);
    r.tick(10); // sample 100,000 B/s
    expect(r.bytesPerSecond).toBeCloseTo(25_000);
    r.tick(20); // sample 0
    expect(r.bytesPerSecond).toBeCloseTo(18_750);
  });

  it('decays towards zero when idle and ignores ticks that do not advance time', () => {
    const r = new RateEstimator(0);
    r.add(1e6);
    r.tick(10);
    const peak = r.bytesPerSecond;
    r.tick(10);
    expect(r.bytesPerSecond).toBe(peak);
    for (let t = 20; t < 2000; t += 10) r.tick(t);
    expect(r.bytesPerSecond).toBeLessThan(1);
  });
});

describe('RateLimit', () => {
  const opts = { ...DEFAULT_RATE_LIMIT, initial: 10 * MiB, floor: 1 * MiB, ceiling: 100 * MiB, increasePerSecond: 50 * MiB };

  it('raises the limit linearly and stops at the ceiling', () => {
    const l = new RateLimit(0, opts);
    l.tick(100); // +5 MiB/s
    expect(l.bytesPerSecond).toBe(15 * MiB);
    l.tick(10_000);
    expect(l.bytesPerSecond).toBe(100 * MiB);
  });

  it('cuts to three quarters of the mean client receive rate on a loss', () => {
    const l = new RateLimit(0, opts);
    expect(l.onLoss(1000, 8 * MiB)).toBe(true);
    expect(l.bytesPerSecond).toBe(6 * MiB);
    expect(l.cuts).toBe(1);
  });

  it('holds off further cuts for a while, so one burst of losses is one cut', () => {
    const l = new RateLimit(0, opts);
    l.onLoss(1000, 8 * MiB);
    expect(l.onLoss(1000 + opts.cutHoldoffMs - 1, 4 * MiB)).toBe(false);
    expect(l.bytesPerSecond).toBe(6 * MiB);
    expect(l.onLoss(1000 + opts.cutHoldoffMs, 4 * MiB)).toBe(true);
    expect(l.bytesPerSecond).toBe(3 * MiB);
  });

  it('never cuts below the floor nor raises the limit on a loss', () => {
    const l = new RateLimit(0, opts);
    l.onLoss(1000, 0.1 * MiB);
    expect(l.bytesPerSecond).toBe(1 * MiB);
    const m = new RateLimit(0, opts);
    m.onLoss(1000, 1000 * MiB); // clients claim more than we send: keep the limit
    expect(m.bytesPerSecond).toBe(10 * MiB);
  });

  it('falls back to cutting its own limit when no client reported a rate', () => {
    const l = new RateLimit(0, opts);
    l.onLoss(1000, 0);
    expect(l.bytesPerSecond).toBe(7.5 * MiB);
  });

  it('spends tokens at the limit', () => {
    const l = new RateLimit(0, { ...opts, initial: 1 * MiB });
    let sent = 0;
    // Offer 4 KiB every millisecond for one second: about 1 MiB gets through (plus the initial burst).
    for (let t = 0; t <= 1000; t++) if (l.take(t, 4096)) sent += 4096;
    expect(sent).toBeGreaterThanOrEqual(1 * MiB);
    expect(sent).toBeLessThanOrEqual(1 * MiB + 64 * 1024 + 4096);
  });

  it('says how long until a send fits', () => {
    const l = new RateLimit(0, { ...opts, initial: 1 * MiB });
    while (l.take(0, 4096));
    const wait = l.msUntil(0, 4096);
    expect(wait).toBeGreaterThan(0);
    expect(l.take(wait, 4096)).toBe(true);
  });
});

describe('ClientRates', () => {
  it('averages fresh reports and forgets stale ones', () => {
    const c = new ClientRates(1000);
    c.report(1, 100, 0);
    c.report(2, 300, 500);
    expect(c.mean(600)).toBe(200);
    c.report(1, 500, 700); // a newer report replaces the old one
    expect(c.mean(800)).toBe(400);
    expect(c.mean(1600)).toBe(500); // client 2's report is now stale
    expect(c.size).toBe(1);
    expect(c.mean(5000)).toBe(0);
  });
});

describe('RetransmitTimer', () => {
  it('starts at the session minimum and follows reply times', () => {
    const t = new RetransmitTimer(40);
    expect(t.ms).toBe(40);
    for (let i = 0; i < 50; i++) t.sample(100);
    expect(t.ms).toBeGreaterThanOrEqual(100);
    expect(t.ms).toBeLessThan(150);
    for (let i = 0; i < 50; i++) t.sample(1);
    expect(t.ms).toBe(40);
  });

  it('backs off on timeouts, up to its cap', () => {
    const t = new RetransmitTimer(40, 25);
    t.onTimeout();
    expect(t.ms).toBe(80);
    for (let i = 0; i < 10; i++) t.onTimeout();
    expect(t.ms).toBe(1000);
  });
});
