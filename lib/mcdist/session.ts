/**
 * A session is one fork family's distribution channel: its id, key, group,
 * ports and block geometry. The parent creates it; the descriptor (with the
 * key, so it must travel over the authenticated control channel, never over
 * the group) is handed to every clone.
 *
 * Each session gets its own group and port, derived from its random id, so
 * fork families rarely share a group. They may still collide, and Linux
 * delivers a group's datagrams to every socket bound to the port
 * (IP_MULTICAST_ALL), so the id and MAC in every datagram are what actually
 * keep sessions apart.
 */
import { createHash, randomBytes } from 'node:crypto';
import { MAX_UDP_BLOCK_BYTES, SESSION_ID_BYTES, type WireKeys } from './wire.js';

export type Transport = 'multicast' | 'tcp';

export interface Session {
  /** 16 hex digits. */
  id: string;
  /** HMAC key, 32 bytes. */
  key: Buffer;
  blockSize: number;
  blockCount: number;
  /** Multicast group (IPv4, organization-local scope 239.192.0.0/14) and its port. */
  group: string;
  groupPort: number;
  /** Where clients send requests (UDP) and where the TCP fallback listens. */
  serverAddress: string;
  requestPort: number;
  tcpPort: number;
  /** Transport the server chose; clients may still fall back to TCP on their own. */
  transport: Transport;
  /** Multicast TTL: 1 keeps the group on the parent's link. */
  ttl: number;
  /** Clients retransmit a request after this long without the block. */
  retransmitMs: number;
}

export interface SessionOptions {
  blockSize?: number;
  blockCount: number;
  serverAddress: string;
  transport?: Transport;
  ttl?: number;
  retransmitMs?: number;
  /** Override the derived group or port (tests force collisions with these). */
  group?: string;
  groupPort?: number;
  /** Fixed id and key (tests); random otherwise. */
  id?: string;
  key?: Buffer;
}

export const DEFAULT_BLOCK_SIZE = 4096;
export const DEFAULT_RETRANSMIT_MS = 40;

/** Shortest session key accepted: an empty or short key would let anyone forge datagrams. */
export const MIN_KEY_BYTES = 16;

function checkKey(key: Buffer): Buffer {
  if (key.length < MIN_KEY_BYTES) throw new RangeError(`session key must be at least ${MIN_KEY_BYTES} bytes, got ${key.length}`);
  return key;
}

/** A new session; ports 0 are filled in by the server when it binds. */
export function createSession(opts: SessionOptions): Session {
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > MAX_UDP_BLOCK_BYTES) {
    throw new RangeError(`block size must be 1..${MAX_UDP_BLOCK_BYTES} bytes, got ${blockSize}`);
  }
  if (!Number.isInteger(opts.blockCount) || opts.blockCount < 0 || opts.blockCount > 0xffffffff) {
    throw new RangeError(`block count must be 0..2^32-1, got ${opts.blockCount}`);
  }
  const id = opts.id ?? randomBytes(SESSION_ID_BYTES).toString('hex');
  if (!/^[0-9a-f]{16}$/.test(id)) throw new RangeError(`session id must be 16 hex digits, got ${id}`);
  const derived = deriveGroup(id);
  return {
    id,
    key: checkKey(opts.key ?? randomBytes(32)),
    blockSize,
    blockCount: opts.blockCount,
    group: opts.group ?? derived.group,
    groupPort: opts.groupPort ?? derived.port,
    serverAddress: opts.serverAddress,
    requestPort: 0,
    tcpPort: 0,
    transport: opts.transport ?? 'multicast',
    ttl: opts.ttl ?? 1,
    retransmitMs: opts.retransmitMs ?? DEFAULT_RETRANSMIT_MS,
  };
}

/** Group 239.192.0.0/14 and a port in 40000..49999, from a hash of the id. */
export function deriveGroup(id: string): { group: string; port: number } {
  const h = createHash('sha256').update(`snowflock-mcdist:${id}`).digest();
  const group = `239.${192 + (h[0]! & 3)}.${h[1]!}.${Math.max(1, h[2]!)}`;
  const port = 40000 + (h.readUInt16BE(3) % 10000);
  return { group, port };
}

export function wireKeys(s: Session): WireKeys {
  return { sessionId: Buffer.from(s.id, 'hex'), key: checkKey(s.key), blockSize: s.blockSize };
}

/** The descriptor handed to clones: JSON, key in base64. */
export function encodeSession(s: Session): string {
  return JSON.stringify({ ...s, key: s.key.toString('base64') });
}

export function decodeSession(text: string): Session {
  const raw = JSON.parse(text) as Record<string, unknown>;
  const str = (k: string): string => {
    const v = raw[k];
    if (typeof v !== 'string') throw new TypeError(`session descriptor: ${k} must be a string`);
    return v;
  };
  const int = (k: string): number => {
    const v = raw[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw new TypeError(`session descriptor: ${k} must be a non-negative integer`);
    }
    return v;
  };
  const transport = str('transport');
  if (transport !== 'multicast' && transport !== 'tcp') {
    throw new TypeError(`session descriptor: unknown transport ${transport}`);
  }
  const s = createSession({
    id: str('id'),
    key: Buffer.from(str('key'), 'base64'),
    blockSize: int('blockSize'),
    blockCount: int('blockCount'),
    group: str('group'),
    groupPort: int('groupPort'),
    serverAddress: str('serverAddress'),
    transport,
    ttl: int('ttl'),
    retransmitMs: int('retransmitMs'),
  });
  return { ...s, requestPort: int('requestPort'), tcpPort: int('tcpPort') };
}
