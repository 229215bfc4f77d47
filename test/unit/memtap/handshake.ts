// The client's half of the memserver handshake on a bare socket, for tests that must send what
// MemClient never would (replays, forged proofs, flipped bytes) and see every byte that comes back.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { CHALLENGE_HEAD_BYTES, FrameReader, MAX_REPLY_RECORD, MsgType, decodeChallenge, encodeHello, encodeProof, type Frame } from '../../../lib/memtap/protocol.js';
import { Opener, Sealer, sessionKeys } from '../../../lib/memtap/secure.js';

/** A socket and everything it received, cut into records (frames after their length field). */
export class RawPeer {
  readonly records: Buffer[] = [];
  readonly closed: Promise<void>;
  private readonly reader = new FrameReader(MAX_REPLY_RECORD);
  private waiting?: () => void;
  private taken = 0;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.records.push(...this.reader.pushRecords(d));
      this.waiting?.();
    });
    socket.on('error', () => {});
    this.closed = new Promise((r) => socket.once('close', () => {
      r();
      this.waiting?.();
    }));
  }

  static connect(port: number): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawPeer(s)));
      s.once('error', reject);
    });
  }

  /** the records not taken by next() */
  rest(): Buffer[] {
    return this.records.slice(this.taken);
  }

  /** The next record, or undefined once the server hung up without one. */
  async next(timeoutMs = 5000): Promise<Buffer | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.records.length > this.taken) return this.records[this.taken++];
      if (this.socket.destroyed || this.socket.readableEnded) return undefined;
      if (Date.now() > deadline) throw new Error('no record in time');
      await new Promise<void>((r) => {
        this.waiting = r;
        setTimeout(r, 50);
      });
    }
  }
}

export interface Session {
  rx?: Opener;
  tx?: Sealer;
  flags: number;
}

/** Sends HELLO, checks nothing, answers the CHALLENGE with the proof `token` gives (or `proof`). */
export async function handshake(p: RawPeer, token: Buffer, vmid: number, o: { proof?: Buffer } = {}): Promise<Session & { challenge?: Frame }> {
  const nonce = randomBytes(32);
  const hello = encodeHello({ vmid, nonce });
  p.socket.write(hello);
  const r = await p.next();
  if (!r || r[0] !== MsgType.Challenge) return { flags: 0, ...(r ? { challenge: { type: r[0]!, payload: r.subarray(1) } } : {}) };
  const c = decodeChallenge(r.subarray(1));
  const k = sessionKeys(token, hello.subarray(5), r.subarray(1, 1 + CHALLENGE_HEAD_BYTES), vmid, c.flags, nonce, c.nonce);
  p.socket.write(encodeProof(o.proof ?? k.clientProof));
  return { flags: c.flags, rx: new Opener(k.serverToClient), tx: new Sealer(k.clientToServer) };
}

/** Flips `bits` of byte `at`. */
export const flip = (b: Buffer, at: number, bits: number) => void (b[at] = b[at]! ^ bits);

/** `frame` sealed once the session has keys; one cut short of its length field (fuzz) is sealed with an empty body. */
export const sealed = (s: Session, frame: Buffer) => (s.tx ? s.tx.seal(frame.length >= 4 ? frame : Buffer.concat([frame, Buffer.alloc(4 - frame.length)])) : frame);
