/**
 * Where the server's blocks come from: guest pages, descriptor chunks or disk
 * blocks. Blocks are numbered 0..count-1; read() returns at most the
 * session's block size and is called once per send, so sources that copy
 * (e.g. mapping foreign pages) should return a fresh buffer each time.
 *
 * A source that must wait for its bytes (a disk slice read over NBD) returns
 * a promise; the servers start such reads a few queued blocks ahead and send
 * in queue order. A read that fails is not sent: the multicast server forgets
 * the request (the client asks again), the TCP server drops the connection.
 */
export interface BlockSource {
  readonly count: number;
  read(index: number): Buffer | Promise<Buffer>;
}

/** A source backed by one buffer, cut into fixed-size blocks (the last may be short). */
export class BufferSource implements BlockSource {
  readonly count: number;

  constructor(private readonly bytes: Buffer, private readonly blockSize: number) {
    this.count = Math.ceil(bytes.length / blockSize);
  }

  read(index: number): Buffer {
    const start = index * this.blockSize;
    return this.bytes.subarray(start, Math.min(this.bytes.length, start + this.blockSize));
  }
}

/**
 * Synthetic blocks whose bytes are a pure function of (seed, index), so a
 * process elsewhere can check what it received without a copy of the source.
 * Used by the host tests, the benchmark and self-tests.
 */
export class PatternSource implements BlockSource {
  constructor(readonly count: number, private readonly blockSize: number, private readonly seed: number) {}

  read(index: number): Buffer {
    return patternBlock(this.seed, index, this.blockSize);
  }
}

export function patternBlock(seed: number, index: number, size: number): Buffer {
  const words = new Uint32Array(Math.ceil(size / 4));
  // xorshift32 seeded from (seed, index); cheap and different for every block.
  let x = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  // Host byte order: the pattern is only ever compared on one machine's processes.
  return Buffer.from(words.buffer, 0, size);
}
