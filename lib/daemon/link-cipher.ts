/**
 * Every frame on the daemons' link after the key handshake (auth.ts) is sealed with AES-256-GCM
 * under a key of its own direction, derived from the host's key (host-key.ts), both handshake
 * nonces and the host's name:
 *
 *   key(dir) = HKDF-SHA256(ikm = host key, salt = Nh | Nm, info = "snowflock-v1 link <dir>\0<host>")
 *   dir: "host>master" or "master>host"
 *
 *   frame = u32 length | u64 seq | AES-256-GCM(key(dir), nonce = 0000 | seq, aad = length | seq)(JSON) | tag (16)
 *
 * seq counts the frames of one direction from 0. A receiver takes only the next seq (a replayed,
 * reordered or dropped frame is refused before anything is decrypted), and only a frame whose tag
 * checks (an altered or forged one is refused). Either refusal ends the link: the stream can no
 * longer be trusted. The length header stays in the clear, so framing is unchanged. Both nonces
 * are fresh per connection, so these are session keys: a frame recorded on one connection does
 * not open on another, even of the same host.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { HEADER_BYTES } from './frame.js';

const SEQ_BYTES = 8;
const TAG_BYTES = 16;
/** What sealing adds to a frame's body. */
export const SEAL_OVERHEAD = SEQ_BYTES + TAG_BYTES;
export const LINK_CIPHER = 'aes-256-gcm-v1';

export interface LinkKeys {
  send: Buffer;
  receive: Buffer;
}

function derive(hostKey: Buffer, host: string, hostNonce: string, masterNonce: string, dir: 'host>master' | 'master>host'): Buffer {
  const salt = Buffer.concat([Buffer.from(hostNonce, 'hex'), Buffer.from(masterNonce, 'hex')]);
  return Buffer.from(hkdfSync('sha256', hostKey, salt, `snowflock-v1 link ${dir}\0${host}`, 32));
}

/** The keys of one side: a host sends with host>master, the master with master>host. */
export function linkKeys(side: 'host' | 'master', hostKey: Buffer, host: string, hostNonce: string, masterNonce: string): LinkKeys {
  const up = derive(hostKey, host, hostNonce, masterNonce, 'host>master');
  const down = derive(hostKey, host, hostNonce, masterNonce, 'master>host');
  return side === 'host' ? { send: up, receive: down } : { send: down, receive: up };
}

function nonce(seq: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(seq), 4);
  return n;
}

export type Opened = { ok: true; body: Buffer } | { ok: false; reason: string };

export class LinkCipher {
  private sent = 0;
  private received = 0;

  constructor(private readonly keys: LinkKeys) {}

  /** A whole frame, length header included. */
  seal(body: Buffer): Buffer {
    const seq = this.sent++;
    const out = Buffer.allocUnsafe(HEADER_BYTES + SEQ_BYTES + body.length + TAG_BYTES);
    out.writeUInt32BE(SEQ_BYTES + body.length + TAG_BYTES, 0);
    out.writeBigUInt64BE(BigInt(seq), HEADER_BYTES);
    const c = createCipheriv('aes-256-gcm', this.keys.send, nonce(seq));
    c.setAAD(out.subarray(0, HEADER_BYTES + SEQ_BYTES));
    const n = c.update(body).copy(out, HEADER_BYTES + SEQ_BYTES);
    c.final();
    c.getAuthTag().copy(out, HEADER_BYTES + SEQ_BYTES + n);
    return out;
  }

  /** A frame's body (after its length header) as it came off the wire. */
  open(frame: Buffer): Opened {
    const seq = this.received;
    if (frame.length < SEAL_OVERHEAD) return { ok: false, reason: `frame ${seq} is too short to be sealed (${frame.length} bytes)` };
    const got = frame.readBigUInt64BE(0);
    if (got !== BigInt(seq)) {
      return { ok: false, reason: `frame out of sequence (got ${got}, expected ${seq}): replayed, reordered, dropped or injected on the way` };
    }
    const header = Buffer.allocUnsafe(HEADER_BYTES + SEQ_BYTES);
    header.writeUInt32BE(frame.length, 0);
    frame.copy(header, HEADER_BYTES, 0, SEQ_BYTES);
    const d = createDecipheriv('aes-256-gcm', this.keys.receive, nonce(seq));
    d.setAAD(header);
    d.setAuthTag(frame.subarray(frame.length - TAG_BYTES));
    try {
      const body = Buffer.concat([d.update(frame.subarray(SEQ_BYTES, frame.length - TAG_BYTES)), d.final()]);
      this.received++;
      return { ok: true, body };
    } catch {
      return { ok: false, reason: `frame ${seq} failed authentication: altered on the way, or not sealed with this link's key` };
    }
  }
}
