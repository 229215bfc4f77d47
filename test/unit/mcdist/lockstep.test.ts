import { describe, expect, it } from 'vitest';
import { LockstepFilter, Verdict } from '../../../lib/mcdist/lockstep.js';
import { McdistServer } from '../../../lib/mcdist/server.js';
import { PatternSource } from '../../../lib/mcdist/source.js';
import { encodeRequest } from '../../../lib/mcdist/wire.js';
import { keysOf, testSession } from './helpers.js';

const W = 40; // window, ms
const fresh = { firstSeq: 0, seenSeq: 0, quietMs: 0 };

describe('LockstepFilter', () => {
  it('serves the first request and merges the ones that find it queued', () => {
    const f = new LockstepFilter(10, W);
    expect(f.onRequest(3, 0, fresh)).toBe(Verdict.Serve);
    expect(f.onRequest(3, 1, fresh)).toBe(Verdict.Merge);
    expect(f.onRequest(3, 2, { firstSeq: 1, seenSeq: 50, quietMs: 0 })).toBe(Verdict.Merge);
  });

  it('suppresses requests that crossed the reply in quick succession', () => {
    const f = new LockstepFilter(10, W);
    f.onRequest(3, 0, fresh);
    f.onSent(3, 1, 10); // sent as seq 10
    // Clients that have not yet received seq 10, within the window.
    expect(f.onRequest(3, 5, { firstSeq: 1, seenSeq: 9, quietMs: 2 })).toBe(Verdict.Suppress);
    expect(f.onRequest(3, 5, fresh)).toBe(Verdict.Suppress);
    // Behind but not starved: the reply is waiting in its socket buffer, however old it is.
    expect(f.onRequest(3, 1000, { firstSeq: 1, seenSeq: 9, quietMs: 1 })).toBe(Verdict.Suppress);
  });

  it('resends at once, as a loss, when the client received later sends but not this one', () => {
    const f = new LockstepFilter(10, W);
    f.onRequest(3, 0, fresh);
    f.onSent(3, 1, 10);
    expect(f.onRequest(3, 2, { firstSeq: 1, seenSeq: 11, quietMs: 0 })).toBe(Verdict.Lost);
    expect(f.onRequest(3, 2, { firstSeq: 1, seenSeq: 11, quietMs: 0 })).toBe(Verdict.Merge);
  });

  it('resends without a loss signal to a client that joined after the send', () => {
    const f = new LockstepFilter(10, W);
    f.onRequest(3, 0, fresh);
    f.onSent(3, 1, 10);
    expect(f.onRequest(3, 2, { firstSeq: 20, seenSeq: 25, quietMs: 0 })).toBe(Verdict.Stale);
  });

  it('serves a retransmission again after the timeout when the client heard nothing since', () => {
    const f = new LockstepFilter(10, W);
    f.onRequest(3, 0, fresh);
    f.onSent(3, 1, 10);
    // The reply and everything after it were lost: the client is starved.
    expect(f.onRequest(3, 1 + W - 1, { firstSeq: 1, seenSeq: 9, quietMs: W })).toBe(Verdict.Suppress);
    expect(f.onRequest(3, 1 + W, { firstSeq: 1, seenSeq: 9, quietMs: W })).toBe(Verdict.Stale);
    // A client that never received anything is judged by time alone.
    f.onSent(3, 100, 11);
    expect(f.onRequest(3, 100 + W, { firstSeq: 0, seenSeq: 0, quietMs: W })).toBe(Verdict.Stale);
  });

  it('tracks blocks independently', () => {
    const f = new LockstepFilter(10, W);
    expect(f.onRequest(1, 0, fresh)).toBe(Verdict.Serve);
    expect(f.onRequest(2, 0, fresh)).toBe(Verdict.Serve);
    f.onSent(1, 0, 1);
    expect(f.onRequest(2, 0, fresh)).toBe(Verdict.Merge);
    expect(f.onRequest(1, 0, fresh)).toBe(Verdict.Suppress);
  });
});

describe('McdistServer lockstep accounting', () => {
  it('counts one served block for a burst of identical requests', async () => {
    const session = testSession({ blockCount: 8 });
    const server = new McdistServer(session, new PatternSource(8, session.blockSize, 1), null);
    const keys = keysOf(session);
    for (let client = 1; client <= 32; client++) {
      const req = Buffer.concat(encodeRequest(keys, {
        index: 5, seenSeq: 0, firstSeq: 0, clientId: client, rxRateKiBps: 1000, attempt: 0, quietMs: 0, counter: 1,
      }));
      server.handleDatagram(req, 0);
    }
    const s = server.stats();
    expect(s.requestsReceived).toBe(32);
    expect(s.merged).toBe(31);
    expect(server.backlog).toBe(1);
    await server.close();
  });
});
