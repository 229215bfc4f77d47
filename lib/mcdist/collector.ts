/**
 * The receive-side bookkeeping both transports share: which blocks are here,
 * the batch being built, and who waits for what.
 *
 * A block is Missing, then Batched (verified, waiting for its batch to be
 * handed over), then Delivered. A batch is handed to onBatch when it reaches
 * `batchLimit` blocks or when a block someone waits for joins it; only then
 * do the waiters resume, so the consumer has installed the blocks first.
 */
import type { BatchHandler, Block, Log } from './types.js';

export const DEFAULT_BATCH_LIMIT = 1024;

const BlockState = { Missing: 0, Batched: 1, Delivered: 2 } as const;

interface Waiter {
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

export class BlockCollector {
  private readonly state: Uint8Array;
  private readonly store: (Buffer | undefined)[] = [];
  private batch: Block[] = [];
  private readonly waiters = new Map<number, Waiter[]>();
  batches = 0;

  constructor(
    blockCount: number,
    private readonly onBatch: BatchHandler | undefined,
    private readonly batchLimit = DEFAULT_BATCH_LIMIT,
    private readonly log?: Log,
  ) {
    this.state = new Uint8Array(blockCount);
  }

  /** Whether the block has been handed over. */
  has(index: number): boolean {
    return this.state[index] === BlockState.Delivered;
  }

  /** Whether the block arrived at all (handed over or in the current batch). */
  received(index: number): boolean {
    return this.state[index] !== BlockState.Missing;
  }

  /** The block if it is here, handing its batch over first if need be. */
  get(index: number): Buffer | undefined {
    if (this.state[index] === BlockState.Batched) this.flush();
    return this.store[index];
  }

  /** Wait for a block that is not here yet. */
  wait(index: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const list = this.waiters.get(index);
      if (list) list.push({ resolve, reject });
      else this.waiters.set(index, [{ resolve, reject }]);
    });
  }

  /** Add a verified block; false if we already had it. */
  add(index: number, data: Buffer): boolean {
    if (this.state[index] !== BlockState.Missing) return false;
    this.state[index] = BlockState.Batched;
    this.batch.push({ index, data });
    if (this.waiters.has(index) || this.batch.length >= this.batchLimit) this.flush();
    return true;
  }

  /** Hand the batch to the consumer, then wake whoever waits for its blocks. */
  flush(): void {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    for (const b of batch) {
      this.state[b.index] = BlockState.Delivered;
      this.store[b.index] = b.data;
    }
    this.batches++;
    try {
      this.onBatch?.(batch);
    } catch (err) {
      // A consumer bug must not take the receive path down with it.
      this.log?.(`mcdist: onBatch threw: ${(err as Error).message}`);
    }
    for (const b of batch) {
      const list = this.waiters.get(b.index);
      if (!list) continue;
      this.waiters.delete(b.index);
      for (const w of list) w.resolve(b.data);
    }
  }

  fail(index: number, err: Error): void {
    const list = this.waiters.get(index);
    this.waiters.delete(index);
    for (const w of list ?? []) w.reject(err);
  }

  failAll(err: Error): void {
    for (const index of [...this.waiters.keys()]) this.fail(index, err);
  }
}
