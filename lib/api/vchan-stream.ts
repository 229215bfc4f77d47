/**
 * A Node Duplex over one libxenvchan connection, so the same framing code (FramedSocket) runs
 * over vchan as over TCP. One loop owns the event channel: it polls the fd on a worker thread
 * (at most POLL_MS at a time, so closing never waits long and never frees the vchan under a
 * blocked call), then reads what arrived and lets blocked writes continue.
 *
 * A guest's vchan does not survive a VM fork: in a clone, the ring is a copy of the parent's
 * and the event channel is bound to nothing. The guest side therefore checks `stillOurs`
 * before it touches the ring; once that says no, the stream ends without closing the vchan
 * (unmapping the parent's grants or notifying the parent's port from a clone would be wrong).
 */
import { Duplex } from 'node:stream';
import type { VchanHandle, VchanLib } from './vchan-lib.js';

const POLL_MS = 200;
const READ_CHUNK = 64 * 1024;

export class VchanStream extends Duplex {
  private wantRead = false;
  private closing = false;
  private pendingWrite: { chunk: Buffer; done: (e?: Error | null) => void } | null = null;
  private readonly loopDone: Promise<void>;

  private abandoned = false;

  /**
   * server: true for dom0's side, which exists before its client connects.
   * stillOurs: false once this VM is a clone of the one that opened the vchan.
   */
  constructor(private readonly lib: VchanLib, private readonly h: VchanHandle, private readonly server: boolean,
    private readonly stillOurs: () => boolean = () => true) {
    super();
    this.loopDone = this.loop();
  }

  override _read(): void {
    this.wantRead = true;
    this.drain();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    this.pendingWrite = { chunk, done };
    this.flush();
  }

  override _destroy(err: Error | null, done: (e: Error | null) => void): void {
    this.closing = true;
    this.loopDone.finally(() => {
      if (!this.abandoned) this.lib.close(this.h);
      done(err);
    });
  }

  /** False (and the stream ends) once the vchan belongs to another VM. */
  private owned(): boolean {
    if (this.abandoned) return false;
    if (this.stillOurs()) return true;
    this.abandoned = true;
    this.destroy(new Error('this VM was cloned: the vchan belongs to its parent'));
    return false;
  }

  private async loop(): Promise<void> {
    const fd = this.lib.fd(this.h);
    while (!this.closing && this.owned()) {
      this.drain();
      this.flush();
      const open = this.lib.isOpen(this.h);
      if (open === 0 || (open !== 1 && !this.server)) {
        this.drain();
        this.push(null);
        this.pendingWrite?.done(new Error('the vchan peer closed the connection'));
        this.pendingWrite = null;
        return;
      }
      const r = await this.lib.pollReadable(fd, POLL_MS);
      if (r < 0) {
        this.destroy(new Error('poll() on the vchan event channel failed'));
        return;
      }
      if (r > 0) this.lib.wait(this.h);
    }
  }

  /** Reads what is there, never more: read() must not block (see vchan-lib.ts). */
  private drain(): void {
    while (this.wantRead && !this.closing && this.owned()) {
      const ready = this.lib.dataReady(this.h);
      if (ready <= 0) return;
      const buf = Buffer.allocUnsafe(Math.min(ready, READ_CHUNK));
      const got = this.lib.read(this.h, buf);
      if (got < 0) {
        this.destroy(new Error('libxenvchan_read failed'));
        return;
      }
      if (got === 0) return;
      this.wantRead = this.push(buf.subarray(0, got));
    }
  }

  /** Writes as much of the pending chunk as the ring has room for; the loop retries the rest. */
  private flush(): void {
    const w = this.pendingWrite;
    if (!w || this.closing || !this.owned()) return;
    while (w.chunk.length > 0) {
      const space = this.lib.bufferSpace(this.h);
      if (space <= 0) return;
      const n = this.lib.write(this.h, Buffer.from(w.chunk.subarray(0, Math.min(space, w.chunk.length)))); // a copy: ffi gets an unshared buffer
      if (n < 0) {
        this.pendingWrite = null;
        w.done(new Error('libxenvchan_write failed: the vchan is closed'));
        return;
      }
      if (n === 0) return;
      w.chunk = w.chunk.subarray(n);
    }
    this.pendingWrite = null;
    w.done();
  }
}
