/**
 * The sf_* API for programs inside a VM (SnowFlock's guest library):
 *
 *   const t = await sf_request_ticket(4);        // up to 4 clones; t.granted says how many
 *   const vmid = await sf_clone(t);              // 0 in the parent, 1..m in each clone
 *   if (vmid > 0) { work(vmid); await sf_exit(); }
 *   else await sf_join(t);                       // or sf_kill(t) to stop them now
 *
 * Each call also exists in camelCase (requestTicket, clone, exit, join, kill). The functions use
 * one default client, connected from SNOWFLOCK_CHANNEL (channel-spec.ts; vchan by default) unless
 * configure() says otherwise. Refusals are SfError with a stable code (docs/api.md).
 */
import type { Connect } from './channel.js';
import { channelFromEnv, connectorFor, parseChannelSpec } from './channel-spec.js';
import { SfClient, type CloneOptions, type SfClientOptions, type TicketRef } from './client.js';

export { SfClient, type CloneOptions, type SfClientOptions, type TicketRef } from './client.js';
export { ChannelUnavailableError, MessageChannel, type Connect, type GuestChannel } from './channel.js';
export { connectTcp, type TcpChannelOptions } from './tcp-channel.js';
export { connectVchan, type VchanChannelOptions } from './vchan-channel.js';
export { parseChannelSpec, channelFromEnv, connectorFor, type ChannelSpec } from './channel-spec.js';
export { startWorkers, type WorkerSpec, type WorkerGroup } from './hierarchical.js';
export { SfError, type SfErrorCode } from '../daemon/errors.js';
export type { CloneResult, EndReport, StatusResult, TicketInfo } from '../daemon/protocol.js';

let defaultClient: SfClient | null = null;

/** Sets the channel the sf_* functions use: a connect function or a channel string. */
export function configure(channel: Connect | string, options?: SfClientOptions): SfClient {
  defaultClient?.close();
  const connect = typeof channel === 'string' ? connectorFor(parseChannelSpec(channel)) : channel;
  defaultClient = new SfClient(connect, options);
  return defaultClient;
}

function client(): SfClient {
  defaultClient ??= new SfClient(connectorFor(channelFromEnv()));
  return defaultClient;
}

export function sf_request_ticket(n: number, options: { hierarchical?: boolean } = {}) {
  return client().requestTicket(n, options);
}

export function sf_clone(ticket: TicketRef, options: CloneOptions = {}) {
  return client().clone(ticket, options);
}

export function sf_exit() {
  return client().exit();
}

export function sf_join(ticket: TicketRef) {
  return client().join(ticket);
}

export function sf_kill(ticket: TicketRef) {
  return client().kill(ticket);
}

export {
  sf_request_ticket as requestTicket, sf_clone as clone, sf_exit as exit, sf_join as join, sf_kill as kill,
};
