/**
 * The TCP channel to a host daemon, for tests and for hosts without vchan. The daemon learns
 * which domain is calling from its TcpGuestTransport: from the guest's address, or (when it is
 * configured to trust claims, e.g. in tests) from the domid sent here in a first identify message.
 */
import net from 'node:net';
import { FramedSocket } from '../daemon/framed-socket.js';
import { request } from '../daemon/protocol.js';
import { ChannelUnavailableError, MessageChannel, type GuestChannel } from './channel.js';

export interface TcpChannelOptions {
  host: string;
  port: number;
  /** Sent as the identify message; leave out when the daemon maps addresses to domains. */
  domid?: number;
  connectTimeoutMs?: number;
}

export async function connectTcp(o: TcpChannelOptions): Promise<GuestChannel> {
  const socket = net.connect(o.port, o.host);
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ChannelUnavailableError(`cannot reach the host daemon at ${o.host}:${o.port}: no answer within ${o.connectTimeoutMs ?? 10_000} ms`));
    }, o.connectTimeoutMs ?? 10_000);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(new ChannelUnavailableError(`cannot reach the host daemon at ${o.host}:${o.port}: ${e.message}`));
    });
  });
  const conn = new FramedSocket(socket, `host daemon ${o.host}:${o.port}`);
  if (o.domid !== undefined) conn.send(request(0, 'identify', { domid: o.domid }));
  return new MessageChannel(conn);
}
