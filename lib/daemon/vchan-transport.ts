/**
 * dom0's side of the guests' vchan channels. A libxenvchan server serves one peer domain, so each
 * admitted guest gets its own server at /local/domain/0/data/vchan/<name>/<domid>, with rings of
 * ringBytes (64 KiB: a whole message fits) each way; the domid the transport reports is the one
 * Xen granted the ring to, so it cannot be forged. A vchan carries one connection at a time:
 * when the guest closes it, the server is set up again for its next connection.
 *
 * The daemon admits clones it builds (HostCommandRunner calls admit); parents must be admitted
 * by whoever runs the daemon (e.g. `--vchan-domid`). Needs ffi-rs; tested only inside Xen.
 */
import type { MessageConnection } from './framed-socket.js';
import { FramedSocket } from './framed-socket.js';
import type { GuestTransport } from './guest-transport.js';
import type { Log } from './host-commands.js';
import { loadVchanLib, type VchanLib } from '../api/vchan-lib.js';
import { VchanStream } from '../api/vchan-stream.js';
import { DEFAULT_VCHAN_NAME, vchanPath } from '../api/vchan-channel.js';

const SERVE_RETRY_MS = 2000;

export interface VchanGuestTransportOptions {
  /** libxenvchan; loaded through ffi-rs when left out (tests pass an in-memory one). */
  lib?: VchanLib;
  name?: string;
  ringBytes?: number;
  log?: Log;
}

export class VchanGuestTransport implements GuestTransport {
  private lib: VchanLib | null = null;
  private onConnection: ((conn: MessageConnection, domid: number) => void) | null = null;
  private readonly served = new Map<number, MessageConnection | null>();
  private closed = false;
  /** Domains whose server could not be set up yet (logged once, retried). */
  private readonly failing = new Set<number>();

  constructor(private readonly o: VchanGuestTransportOptions = {}) {}

  async listen(onConnection: (conn: MessageConnection, domid: number) => void): Promise<void> {
    this.lib = this.o.lib ?? loadVchanLib();
    this.onConnection = onConnection;
    for (const domid of this.served.keys()) this.serve(domid);
  }

  admit(domid: number): void {
    if (this.served.has(domid)) return;
    this.served.set(domid, null);
    if (this.onConnection) this.serve(domid);
  }

  dismiss(domid: number): void {
    const conn = this.served.get(domid);
    this.served.delete(domid);
    this.failing.delete(domid);
    conn?.close('domain dismissed');
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const domid of [...this.served.keys()]) this.dismiss(domid);
  }

  private serve(domid: number): void {
    if (this.closed || !this.served.has(domid) || !this.lib || !this.onConnection) return;
    const path = vchanPath(this.o.name ?? DEFAULT_VCHAN_NAME, domid);
    const ring = this.o.ringBytes ?? 64 * 1024;
    const h = this.lib.serverInit(domid, path, ring, ring);
    if (!h) {
      // E.g. the domain is still being built or xenstored was busy: try again while admitted.
      if (!this.failing.has(domid)) this.o.log?.('vchan-serve-failed', { domid, path, retryEveryMs: SERVE_RETRY_MS });
      this.failing.add(domid);
      setTimeout(() => { if (this.served.get(domid) === null) this.serve(domid); }, SERVE_RETRY_MS).unref();
      return;
    }
    this.failing.delete(domid);
    const stream = new VchanStream(this.lib, h, true);
    const conn = new FramedSocket(stream, `vchan of domain ${domid}`);
    this.served.set(domid, conn);
    // Serve again only once the old server is gone: its close removes the xenstore path.
    stream.once('close', () => {
      if (this.served.get(domid) === conn) {
        this.served.set(domid, null);
        this.serve(domid); // ready for the guest's next connection
      }
    });
    this.onConnection(conn, domid);
  }
}
