/**
 * mcdist: multicast distribution of pages, descriptor chunks and disk blocks
 * from a parent's host to all of its clones. See docs/mcdist.md.
 *
 * Typical use, on the parent's host:
 *   const server = await startServer(createSession({ blockCount, serverAddress }), source);
 *   // hand encodeSession(server.session) to the clones over the control channel
 * and in each clone:
 *   const client = await openClient(decodeSession(text), { onBatch });
 *   const page = await client.fetch(pfn);
 */
export { McdistClient, type McdistClientOptions } from './client.js';
export { BlockCollector, DEFAULT_BATCH_LIMIT } from './collector.js';
export { probeMulticast, type ProbeOptions, type ProbeResult } from './probe.js';
export { McdistServer, type McdistServerOptions } from './server.js';
export {
  createSession, decodeSession, deriveGroup, encodeSession, type Session, type SessionOptions, type Transport,
} from './session.js';
export { BufferSource, PatternSource, patternBlock, type BlockSource } from './source.js';
export { TcpBlockClient, TcpBlockServer } from './tcp-fallback.js';
export {
  openClient, startServer, type ClientOptions, type DistributionServer, type ServerOptions, type TransportChoice,
} from './transport.js';
export type { BatchHandler, Block, BlockClient, ClientStats, Log, ServerStats } from './types.js';
export { DropReason, totalDrops, type DropCounters } from './wire.js';
