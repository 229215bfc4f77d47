/**
 * BLOCK payloads sealed with AES-256-GCM (wire v3). A block is a clone's memory page or disk
 * block: it must not cross the network in clear, as the memserver's and the front's streams do
 * not. Requests stay HMAC'd in clear (they carry no content).
 *
 * Key: HKDF-SHA256(session key, info "snowflock mcdist v3 block seal"), so the AES key is not
 * the HMAC key. Nonce (12 bytes, carried in the datagram): a 4-byte prefix drawn at random once
 * per process, then a 64-bit counter this process increments for every block it seals, whatever
 * the session. Within a process a nonce never repeats; two processes share a session key only if
 * a session descriptor were served twice, and even then their prefixes differ unless 32 random
 * bits collide. The counter starts at 1 (0 never appears, so the replay window's "nothing yet"
 * cannot be confused with a block).
 *
 * A receiver takes each (prefix, counter) once, in a 256-wide sliding window per prefix
 * (replay.ts): one sender's datagrams arrive in order on a LAN, so a nonce older than the window
 * is a replay, not a late block.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { ReplayGuard } from './replay.js';

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
const INFO = Buffer.from('snowflock mcdist v3 block seal', 'latin1');

const sealKeys = new WeakMap<Buffer, Buffer>();

/** The AES key of a session key (derived once per key buffer). */
export function blockSealKey(sessionKey: Buffer): Buffer {
  let k = sealKeys.get(sessionKey);
  if (!k) {
    k = Buffer.from(hkdfSync('sha256', sessionKey, Buffer.alloc(0), INFO, 32));
    sealKeys.set(sessionKey, k);
  }
  return k;
}

/** Nonces that never repeat within this process: a random prefix and a counter. */
export class BlockNonces {
  private readonly prefix: number;
  private counter = 0;

  constructor(prefix = randomBytes(4).readUInt32BE(0)) {
    this.prefix = prefix >>> 0;
  }

  next(): Buffer {
    this.counter++;
    if (!Number.isSafeInteger(this.counter)) throw new RangeError('mcdist block nonces exhausted');
    const n = Buffer.allocUnsafe(NONCE_BYTES);
    n.writeUInt32BE(this.prefix, 0);
    n.writeUInt32BE(Math.floor(this.counter / 0x100000000), 4);
    n.writeUInt32BE(this.counter >>> 0, 8);
    return n;
  }
}

/** The nonces every sender in this process uses (one counter, so no two seals share a nonce). */
export const processNonces = new BlockNonces();

/** Seals `data`; `aad` (the header and nonce) is authenticated, not encrypted. */
export function sealBlock(key: Buffer, nonce: Buffer, aad: Buffer, data: Buffer): { ciphertext: Buffer; tag: Buffer } {
  const c = createCipheriv('aes-256-gcm', blockSealKey(key), nonce);
  c.setAAD(aad);
  const ciphertext = data.length ? c.update(data) : Buffer.alloc(0);
  c.final();
  return { ciphertext, tag: c.getAuthTag() };
}

/** The plaintext, or undefined if the datagram does not authenticate under `key`. */
export function openBlock(key: Buffer, nonce: Buffer, aad: Buffer, ciphertext: Buffer, tag: Buffer): Buffer | undefined {
  try {
    const d = createDecipheriv('aes-256-gcm', blockSealKey(key), nonce);
    d.setAAD(aad);
    d.setAuthTag(tag);
    const plain = ciphertext.length ? d.update(ciphertext) : Buffer.alloc(0);
    d.final(); // throws when the tag does not verify
    return plain;
  } catch {
    return undefined;
  }
}

/** Senders remembered by a receiver: a session has one server process (two with a test harness). */
const MAX_SENDERS = 64;

/** A receiver's record of the nonces it has taken: a replayed block is refused. */
export class BlockReplayGuard {
  private readonly guard = new ReplayGuard(MAX_SENDERS);

  /** Whether the (authenticated) nonce is new; records it if so. */
  admit(nonce: Buffer): boolean {
    const counter = nonce.readUInt32BE(4) * 0x100000000 + nonce.readUInt32BE(8);
    return this.guard.admit(nonce.readUInt32BE(0), counter);
  }
}
