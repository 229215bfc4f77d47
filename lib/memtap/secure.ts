// The memserver's handshake and sealed frames (protocol version 2), shared byte for byte with the
// C++ client (native/page_client.cc). Neither side sends the fork's key: each proves it holds it.
//
//   HELLO     c→s  "SFMTAP01", u32 version (2), u32 vmid, 32-byte client nonce      (plain)
//   CHALLENGE s→c  u32 version, u32 flags, 32-byte server nonce, 32-byte server proof (plain)
//   PROOF     c→s  32-byte client proof                                              (plain)
//   then every frame both ways is sealed (unless flags has FLAG_PLAINTEXT), WELCOME first.
//
// keys  = HKDF-SHA256(ikm = token, salt = client nonce ‖ server nonce,
//                     info = "snowflock memserver v2" ‖ u32 vmid ‖ u32 flags, 128 bytes)
//       = client→server key ‖ server→client key ‖ server proof key ‖ client proof key
// T     = HELLO payload ‖ the first 40 bytes of the CHALLENGE payload (version, flags, nonce)
// proof = HMAC-SHA256(that side's proof key, T)
// A sealed frame is u32 length, then AES-256-GCM(type ‖ payload) and its 16-byte tag, with the
// length field as associated data and nonce = u64 LE counter ‖ 4 zero bytes; each direction
// counts its own frames from 0. A frame that fails to open ends the connection. A recorded
// session replayed to the server meets a fresh server nonce: its PROOF is wrong.
// Frames are sealed and opened by the addon's FrameCipher (native/gcm_frames.cc, OpenSSL's EVP,
// the same code as the C++ client): one cipher context per direction, keyed once, the counter
// kept natively. node:crypto builds a cipher and its key schedule for every frame: that made a
// sealed 1-page fetch over loopback cost 1.6x a plaintext one, where this costs 1.3x
// (test/unit/memtap/seal-cost.test.ts, docs/security.md).
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { loadAddon, type FrameCipher } from '../xen/native.js';
import type { Frame } from './protocol.js';

export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;
export const TAG_BYTES = 16;
/** CHALLENGE flags: frames after the handshake travel unsealed (trusted networks only) */
export const FLAG_PLAINTEXT = 1;
const INFO = Buffer.from('snowflock memserver v2', 'latin1');

export interface SessionKeys {
  clientToServer: Buffer;
  serverToClient: Buffer;
  serverProof: Buffer;
  clientProof: Buffer;
}

/** `hello` and `challengeHead` are the payloads (after the type byte); the head is 40 bytes. */
export function sessionKeys(token: Buffer, hello: Buffer, challengeHead: Buffer, vmid: number, flags: number, clientNonce: Buffer, serverNonce: Buffer): SessionKeys {
  const info = Buffer.alloc(INFO.length + 8);
  INFO.copy(info);
  info.writeUInt32LE(vmid >>> 0, INFO.length);
  info.writeUInt32LE(flags >>> 0, INFO.length + 4);
  const okm = Buffer.from(hkdfSync('sha256', token, Buffer.concat([clientNonce, serverNonce]), info, 128));
  const transcript = Buffer.concat([hello, challengeHead]);
  const mac = (key: Buffer) => createHmac('sha256', key).update(transcript).digest();
  return {
    clientToServer: okm.subarray(0, 32),
    serverToClient: okm.subarray(32, 64),
    serverProof: mac(okm.subarray(64, 96)),
    clientProof: mac(okm.subarray(96, 128)),
  };
}

export function proofsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Loads the addon's cipher now (a memserver calls it at start, so a missing addon fails there and not at a clone's HELLO). */
export function loadFrameCipher(): void {
  void loadAddon().FrameCipher;
}

/** Seals one direction's frames in order. */
export class Sealer {
  private readonly cipher: FrameCipher;
  constructor(key: Buffer) {
    this.cipher = new (loadAddon().FrameCipher)(key, 'seal');
  }

  /** `frame` as protocol.ts encodes it (u32 length, type, payload) → the sealed frame, ready to write. */
  seal(frame: Buffer): Buffer {
    const out = Buffer.allocUnsafe(frame.length + TAG_BYTES);
    this.cipher.seal(frame, out);
    return out;
  }

  /**
   * The same in place: `buffer` is the frame followed by TAG_BYTES of room (protocol.ts's
   * pagesFrame(gfns, TAG_BYTES)); returns it, sealed, so a page crosses memory once.
   */
  sealInPlace(buffer: Buffer): Buffer {
    this.cipher.seal(buffer.subarray(0, buffer.length - TAG_BYTES), buffer);
    return buffer;
  }
}

/** Opens the other direction's frames in order; null when one does not authenticate. */
export class Opener {
  private readonly cipher: FrameCipher;
  constructor(key: Buffer) {
    this.cipher = new (loadAddon().FrameCipher)(key, 'open');
  }

  /** `record` is what follows the length field (FrameReader.pushRecords); it is left as it came. */
  open(record: Buffer): Frame | null {
    if (record.length < 1 + TAG_BYTES) return null;
    const plain = Buffer.allocUnsafe(record.length - TAG_BYTES);
    if (!this.cipher.open(record, plain)) return null;
    return { type: plain[0]!, payload: plain.subarray(1) };
  }
}
