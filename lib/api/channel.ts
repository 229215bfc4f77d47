/**
 * How the guest library reaches its host daemon. A GuestChannel sends one request and waits for
 * its reply; TCP and vchan both build one from a byte stream with the daemons' framing.
 */
import type { MessageConnection } from '../daemon/framed-socket.js';
import { SfError } from '../daemon/errors.js';
import type { GuestRequests, GuestResults } from '../daemon/protocol.js';
import { RpcPeer } from '../daemon/rpc.js';

export interface GuestChannel {
  request<K extends keyof GuestResults>(type: K, body: GuestRequests[K]): Promise<GuestResults[K]>;
  close(): void;
  readonly closed: boolean;
}

export type Connect = () => Promise<GuestChannel>;

/** No connection to the host daemon could be made (as opposed to a refusal from it). */
export class ChannelUnavailableError extends SfError {
  override name = 'ChannelUnavailableError';
  constructor(message: string) {
    super('channel-closed', message);
  }
}

/** A GuestChannel over a framed connection; the guest answers no requests of its own. */
export class MessageChannel implements GuestChannel {
  private readonly peer: RpcPeer;

  constructor(conn: MessageConnection) {
    this.peer = new RpcPeer(conn, { requests: {}, handle: async () => undefined });
  }

  get closed(): boolean {
    return this.peer.closed;
  }

  request<K extends keyof GuestResults>(type: K, body: GuestRequests[K]): Promise<GuestResults[K]> {
    return this.peer.call(type, body) as Promise<GuestResults[K]>;
  }

  close(): void {
    this.peer.close('guest closed the channel');
  }
}
