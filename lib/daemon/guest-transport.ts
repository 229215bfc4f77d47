/**
 * How guest connections reach a host daemon. The transport, not the guest, says which domain a
 * connection comes from: that domid is the guest's whole identity (no key), and the master lets
 * it act on its own family only. vchan knows the peer's domid from Xen; TCP must be told, either
 * by a map from the guest's address to its domid, or, in tests and on a host whose guests are all
 * trusted, by the domid the guest claims in its first message.
 */
import net from 'node:net';
import { FramedSocket, type MessageConnection } from './framed-socket.js';
import { checkRequest, errorReply, guestIdentify, parseEnvelope } from './protocol.js';
import { toWireError } from './errors.js';

export interface GuestTransport {
  listen(onConnection: (conn: MessageConnection, domid: number) => void): Promise<void>;
  /** A domain that may now connect (a clone was built here); transports that serve per domain prepare for it. */
  admit?(domid: number): void;
  /** A domain that is gone. */
  dismiss?(domid: number): void;
  close(): Promise<void>;
}

/** 'claimed': believe the guest's identify message (tests only). A function: map the peer address. */
export type TcpIdentify = 'claimed' | ((remoteAddress: string) => number | undefined);

export interface TcpGuestTransportOptions {
  host?: string;
  port?: number;
  identify: TcpIdentify;
}

const IDENTIFY_TIMEOUT_MS = 10_000;

export class TcpGuestTransport implements GuestTransport {
  private readonly server = net.createServer({ allowHalfOpen: true });
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly o: TcpGuestTransportOptions) {}

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  listen(onConnection: (conn: MessageConnection, domid: number) => void): Promise<void> {
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.setNoDelay(true);
      const conn = new FramedSocket(socket, `guest at ${socket.remoteAddress}:${socket.remotePort}`);
      this.identify(conn, socket.remoteAddress ?? '').then(
        (domid) => { if (domid !== null) onConnection(conn, domid); },
        () => conn.close('identification failed'),
      );
    });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port ?? 0, this.o.host ?? '127.0.0.1', () => resolve());
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async identify(conn: FramedSocket, address: string): Promise<number | null> {
    if (this.o.identify !== 'claimed') {
      const domid = this.o.identify(address);
      if (domid !== undefined) return domid;
      refuse(conn, 0, { code: 'not-authenticated', message: `no guest domain is known at address ${address}` });
      return null;
    }
    const m = await conn.next(IDENTIFY_TIMEOUT_MS);
    const parsed = m.ok ? parseEnvelope(m.value) : { ok: false as const, id: 0, error: { code: 'bad-frame' as const, message: m.reason } };
    if (!parsed.ok) return refuse(conn, parsed.id, parsed.error);
    const msg = parsed.message;
    if (msg.kind !== 'request') return refuse(conn, msg.id, { code: 'not-authenticated', message: 'the first message must be identify' });
    try {
      return (checkRequest(guestIdentify, msg.type, msg.body).body as { domid: number }).domid;
    } catch (e) {
      return refuse(conn, msg.id, toWireError(e));
    }
  }
}

function refuse(conn: MessageConnection, id: number, error: Parameters<typeof errorReply>[1]): null {
  conn.send(errorReply(id, error));
  conn.close(error.message);
  return null;
}
