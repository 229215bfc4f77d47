// The vchan loop waits in poll() on an ffi-rs worker thread, which holds only a raw pointer to
// the pollfd buffer. If a GC frees that buffer while poll() runs, poll() writes revents into
// freed memory: dom0's test process died of heap corruption that way. This drives the real
// pollReadable (libc poll through ffi-rs) on a FIFO with collections forced mid-poll.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadVchanLib, type VchanLib } from '../../lib/api/vchan-lib.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let dir: string;
let fd: number;
let lib: VchanLib;

beforeAll(() => {
  lib = loadVchanLib();
  dir = mkdtempSync(join(tmpdir(), 'sf-poll-'));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  fd = openSync(join(dir, 'fifo'), constants.O_RDWR | constants.O_NONBLOCK);
});

afterAll(() => {
  if (fd !== undefined) closeSync(fd);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('pollReadable keeps its pollfd alive while poll() runs, through forced collections', async () => {
  // Enough calls for the engine to optimise pollReadable, when dead locals stop being kept.
  for (let i = 0; i < 5000; i++) expect(await lib.pollReadable(fd, 0)).toBe(0);
  let clobbered = 0;
  for (let round = 0; round < 20; round++) {
    const polled = lib.pollReadable(fd, 5000);
    await tick(10);
    gc();
    await tick(10);
    // Fresh 8-byte buffers, likely to land in a freed pollfd's chunk if there is one.
    const fresh = Array.from({ length: 2000 }, () => Buffer.from(new ArrayBuffer(8)));
    writeSync(fd, 'x');
    expect(await polled).toBe(1);
    readSync(fd, Buffer.alloc(1));
    clobbered += fresh.filter((b) => b.readBigUInt64LE(0) !== 0n).length;
  }
  expect(clobbered).toBe(0);
}, 60_000);
