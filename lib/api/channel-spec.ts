/**
 * Which channel to use, as one string (SNOWFLOCK_CHANNEL, --channel):
 *   vchan            the default: vchan "snowflock" to dom0
 *   vchan:NAME       another vchan name
 *   tcp://HOST:PORT  TCP to the host daemon (tests, hosts without vchan)
 * SNOWFLOCK_DOMID (--domid) is the domid a TCP channel claims, for daemons that trust claims.
 */
import type { Connect } from './channel.js';
import { connectTcp } from './tcp-channel.js';
import { DEFAULT_VCHAN_NAME, connectVchan } from './vchan-channel.js';

export type ChannelSpec =
  | { kind: 'tcp'; host: string; port: number; domid?: number }
  | { kind: 'vchan'; name: string; domid?: number };

export function parseChannelSpec(spec: string, domid?: number): ChannelSpec {
  const withDomid = domid === undefined ? {} : { domid };
  if (spec === 'vchan') return { kind: 'vchan', name: DEFAULT_VCHAN_NAME, ...withDomid };
  const v = /^vchan:([A-Za-z0-9._-]{1,64})$/.exec(spec);
  if (v) return { kind: 'vchan', name: v[1]!, ...withDomid };
  const t = /^tcp:\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(spec);
  if (t && Number(t[2]) > 0 && Number(t[2]) < 65536) {
    return { kind: 'tcp', host: t[1]!.replace(/^\[|\]$/g, ''), port: Number(t[2]), ...withDomid };
  }
  throw new Error(`bad channel ${JSON.stringify(spec)}: use vchan, vchan:NAME or tcp://HOST:PORT`);
}

export function parseDomid(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  const d = Number(text);
  if (!Number.isSafeInteger(d) || d < 0 || d > 0x7fef) throw new Error(`bad domid ${JSON.stringify(text)}`);
  return d;
}

export function channelFromEnv(env: NodeJS.ProcessEnv = process.env): ChannelSpec {
  return parseChannelSpec(env.SNOWFLOCK_CHANNEL ?? 'vchan', parseDomid(env.SNOWFLOCK_DOMID));
}

export function connectorFor(spec: ChannelSpec): Connect {
  if (spec.kind === 'tcp') return () => connectTcp(spec);
  return () => connectVchan({ name: spec.name, ...(spec.domid === undefined ? {} : { domid: spec.domid }) });
}
