// The wire format: frames, envelopes, versions, and request checks that name the bad field.
import { describe, expect, it } from 'vitest';
import { FrameDecoder, encodeFrame } from '../../../lib/daemon/frame.js';
import {
  MAX_FRAME_BYTES, PROTOCOL_VERSION, checkRequest, daemonRequests, errorReply, guestRequests, hostCommands, hostResults,
  parseEnvelope, reply, request,
} from '../../../lib/daemon/protocol.js';

describe('frames', () => {
  it('round-trips messages however the stream is cut', () => {
    const msgs = [request(1, 'status', {}), request(2, 'request_ticket', { n: 4 }), reply(3, { ok: 'é😀' })];
    const bytes = Buffer.concat(msgs.map((m) => encodeFrame(m, MAX_FRAME_BYTES)));
    for (const cut of [1, 3, 5, bytes.length]) {
      const d = new FrameDecoder(MAX_FRAME_BYTES);
      const got: unknown[] = [];
      for (let i = 0; i < bytes.length; i += cut) {
        const r = d.push(bytes.subarray(i, i + cut));
        expect(r.fatal).toBeNull();
        got.push(...r.frames.map((f) => (f.ok ? f.value : f.reason)));
      }
      expect(got).toEqual(msgs);
    }
  });

  it('refuses an oversized or empty frame from its header alone', () => {
    const big = Buffer.alloc(4);
    big.writeUInt32BE(MAX_FRAME_BYTES + 1);
    expect(new FrameDecoder(MAX_FRAME_BYTES).push(big).fatal).toMatch(/exceeds the 65536-byte limit/);
    expect(new FrameDecoder(MAX_FRAME_BYTES).push(Buffer.alloc(4)).fatal).toMatch(/empty frame/);
    expect(() => encodeFrame({ x: 'a'.repeat(MAX_FRAME_BYTES) }, MAX_FRAME_BYTES)).toThrow(/exceeds/);
  });

  it('reports a frame that is not JSON and keeps reading', () => {
    const bad = Buffer.from('{nope');
    const head = Buffer.alloc(4);
    head.writeUInt32BE(bad.length);
    const r = new FrameDecoder(MAX_FRAME_BYTES).push(Buffer.concat([head, bad, encodeFrame(request(1, 'status', {}), MAX_FRAME_BYTES)]));
    expect(r.fatal).toBeNull();
    expect(r.frames[0]).toMatchObject({ ok: false, reason: expect.stringMatching(/not UTF-8 JSON/) });
    expect(r.frames[1]).toMatchObject({ ok: true, value: { type: 'status', id: 1 } });
  });
});

describe('envelopes', () => {
  it('tells requests, replies and errors apart', () => {
    expect(parseEnvelope(request(5, 'clone', { ticket: 't-1' }))).toEqual({ ok: true, message: { kind: 'request', id: 5, type: 'clone', body: { ticket: 't-1' } } });
    expect(parseEnvelope(reply(5, { vmid: 0 }))).toEqual({ ok: true, message: { kind: 'reply', id: 5, result: { vmid: 0 } } });
    expect(parseEnvelope(errorReply(5, { code: 'not-parent', message: 'no' }))).toMatchObject({ ok: true, message: { kind: 'error', error: { code: 'not-parent' } } });
  });

  it('refuses another version with a clear error, before looking at anything else', () => {
    const r = parseEnvelope({ v: 2, id: 9, type: 'whatever', x: 1 });
    expect(r).toEqual({ ok: false, id: 9, error: expect.objectContaining({ code: 'version-mismatch', field: 'v' }) });
    expect(!r.ok && r.error.message).toMatch(/version 2 is not supported: this daemon speaks version 1/);
    expect(parseEnvelope({ id: 1, type: 'status' })).toMatchObject({ ok: false, error: { code: 'version-mismatch' } });
  });

  it.each([
    [null, 'bad-frame'], [[1, 2], 'bad-frame'], ['x', 'bad-frame'],
    [{ v: 1, type: 'status' }, 'bad-request'], [{ v: 1, id: -1, type: 'status' }, 'bad-request'], [{ v: 1, id: 1.5, type: 'status' }, 'bad-request'],
    [{ v: 1, id: 1 }, 'bad-request'], [{ v: 1, id: 1, type: '' }, 'bad-request'], [{ v: 1, id: 1, type: 'ok' }, 'bad-request'],
    [{ v: 1, id: 1, type: 'error', error: { code: 'made-up', message: 'x' } }, 'bad-request'],
  ])('malformed envelope %j -> %s', (value, code) => {
    expect(parseEnvelope(value)).toMatchObject({ ok: false, error: { code } });
  });
});

describe('request checks', () => {
  const check = (table: Parameters<typeof checkRequest>[0], type: string, body: Record<string, unknown>) => () => checkRequest(table, type, body);

  it('accepts well-formed requests of each link', () => {
    expect(checkRequest(guestRequests, 'request_ticket', { n: 4, hierarchical: true }).body).toEqual({ n: 4, hierarchical: true });
    expect(checkRequest(guestRequests, 'clone', { ticket: 't-0123456789abcdef', requestId: 'abcdefgh12' }).type).toBe('clone');
    expect(checkRequest(daemonRequests, 'join', { domid: 7, ticket: 't-1' }).body).toEqual({ domid: 7, ticket: 't-1' });
    expect(checkRequest(hostCommands, 'build', { fork: { fork: 't-1', family: 'h1:7', clones: 2 }, image: { a: 1 }, vmids: [1, 2] }).type).toBe('build');
    expect(hostResults.destroy({ destroyed: [3], failed: [{ domid: 4, message: 'busy' }] }, 'result')).toEqual({ destroyed: [3], failed: [{ domid: 4, message: 'busy' }] });
  });

  it.each([
    ['clone', {}, 'ticket', /ticket must be a ticket id/],
    ['clone', { ticket: 't-1', requestId: 'short' }, 'requestId', /requestId must be 8-64 characters/],
    ['clone', { ticket: 'x y', requestId: 'abcdefgh' }, 'ticket', /ticket must be a ticket id/],
    ['request_ticket', { n: '4' }, 'n', /n must be a number, got "4"/],
    ['request_ticket', { n: 4, hierarchical: 'yes' }, 'hierarchical', /hierarchical must be true or false/],
    ['join', { ticket: 't-1', domid: 3 }, 'domid', /unexpected field domid/],
    ['exit', JSON.parse('{"__proto__": {"x": 1}}') as Record<string, unknown>, '__proto__', /unexpected field __proto__/],
  ])('guest %s %j is refused naming %s', (type, body, field, message) => {
    expect(check(guestRequests, type, body)).toThrow(expect.objectContaining({ code: 'bad-request', field, message: expect.stringMatching(message) }));
  });

  it('a guest cannot send daemon or host messages, nor claim a domid', () => {
    expect(check(guestRequests, 'register', { vcpus: 1, memoryMiB: 1, clones: [] })).toThrow(expect.objectContaining({ code: 'unknown-type' }));
    expect(check(guestRequests, 'destroy', { domids: [1] })).toThrow(expect.objectContaining({ code: 'unknown-type' }));
    expect(check(guestRequests, 'toString', {})).toThrow(expect.objectContaining({ code: 'unknown-type' }));
    expect(check(guestRequests, 'exit', { domid: 0 })).toThrow(expect.objectContaining({ code: 'bad-request', field: 'domid' }));
  });

  it('bounds lists, numbers and opaque images', () => {
    expect(check(hostCommands, 'destroy', { domids: Array.from({ length: 1025 }, (_, i) => i) })).toThrow(/at most 1024 items/);
    expect(check(hostCommands, 'destroy', { domids: [0x7ff0] })).toThrow(expect.objectContaining({ field: 'domids.0' }));
    expect(check(hostCommands, 'build', { fork: { fork: 't-1', family: 'h1:7', clones: 1 }, image: { x: 'a'.repeat(17_000) }, vmids: [1] }))
      .toThrow(expect.objectContaining({ field: 'image', message: expect.stringMatching(/at most 16384/) }));
    expect(check(daemonRequests, 'request_ticket', { domid: 1, n: 1, vcpus: 0, memoryMiB: 1 })).toThrow(expect.objectContaining({ field: 'vcpus' }));
  });

  it('every message carries the protocol version', () => {
    expect(request(1, 'status', {})).toMatchObject({ v: PROTOCOL_VERSION });
    expect(reply(1, {})).toMatchObject({ v: PROTOCOL_VERSION });
    expect(errorReply(1, { code: 'internal', message: 'x'.repeat(5000) })).toMatchObject({ v: PROTOCOL_VERSION, error: { message: 'x'.repeat(2000) } });
  });
});
