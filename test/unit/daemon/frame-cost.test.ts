// A peer cannot make the frame decoder work quadratically: a 64 KiB frame sent a byte at a time
// is joined once, not re-copied at every byte.
import { afterEach, expect, it, vi } from 'vitest';
import { FrameDecoder, encodeFrame } from '../../../lib/daemon/frame.js';
import { MAX_FRAME_BYTES } from '../../../lib/daemon/protocol.js';

afterEach(() => vi.restoreAllMocks());

it('a 64 KiB frame sent a byte at a time copies its bytes a bounded number of times', () => {
  const frame = encodeFrame({ pad: 'x'.repeat(MAX_FRAME_BYTES - 20) }, MAX_FRAME_BYTES);
  expect(frame.length).toBeGreaterThan(60 * 1024);
  let copied = 0;
  const concat = Buffer.concat;
  vi.spyOn(Buffer, 'concat').mockImplementation((list, total) => {
    const out = concat(list, total);
    copied += out.length;
    return out;
  });
  const d = new FrameDecoder(MAX_FRAME_BYTES);
  const got: unknown[] = [];
  for (let i = 0; i < frame.length; i++) {
    const r = d.push(frame.subarray(i, i + 1));
    expect(r.fatal).toBeNull();
    got.push(...r.frames);
  }
  expect(got).toHaveLength(1);
  expect(got[0]).toMatchObject({ ok: true, value: { pad: expect.any(String) } });
  expect(copied).toBeLessThanOrEqual(2 * frame.length);
});
