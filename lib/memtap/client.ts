// A small memserver client for tests and benchmarks (clones use native/page_client.cc).
// Requests may be pipelined; replies come back in order. Every wait has a timeout, and every
// error names the server. It speaks the handshake and sealed frames of secure.ts as the C++
// client does, and checks the server's proof before it believes anything the server says.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import {
  CHALLENGE_HEAD_BYTES, FrameReader, MAX_REPLY_RECORD, MsgType, ProtocolError, type Frame, type Welcome, decodeChallenge, decodeEcho, decodeError,
  decodePages, decodeWelcome, encodeBye, encodeGet, encodeHello, encodePing, encodeProof,
} from './protocol.js';
import { FLAG_PLAINTEXT, NONCE_BYTES, Opener, Sealer, proofsEqual, sessionKeys } from './secure.js';

export class MemClientError extends Error {
  constructor(
    message: string,
    /** the server's ERROR code, when it sent one */
    readonly code?: number,
  ) {
    super(message);
  }
}

interface Waiter {
  type: number;
  resolve: (payload: Buffer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class MemClient {
  private readonly reader = new FrameReader(MAX_REPLY_RECORD);
  private readonly waiters: Waiter[] = [];
  private failure?: Error;
  private vmid?: number;
  /** HELLO sent: what the CHALLENGE is checked against */
  private handshake?: { token: Buffer; hello: Buffer; nonce: Buffer };
  private rx?: Opener;
  private tx?: Sealer;
  /** the server chose plaintext frames (FLAG_PLAINTEXT) */
  plaintext = false;
  private readonly closed: Promise<void>;

  private constructor(
    private readonly socket: net.Socket,
    readonly address: string,
    private readonly timeoutMs: number,
  ) {
    this.closed = new Promise((r) => socket.once('close', () => r()));
    socket.on('data', (chunk: Buffer) => {
      for (const r of this.reader.pushRecords(chunk)) {
        if (this.failure) return;
        const f = this.rx ? this.rx.open(r) : { type: r[0]!, payload: r.subarray(1) };
        if (!f) return void this.fail(new MemClientError(`memserver ${address}: a sealed frame failed authentication`));
        this.deliver(f);
      }
      if (this.reader.error) this.fail(new MemClientError(`memserver ${address}: ${this.reader.error.message}`));
    });
    socket.on('error', (e) => this.fail(new MemClientError(`memserver ${address}: ${e.message}`)));
    socket.on('close', () => this.fail(new MemClientError(`memserver ${address}: connection closed by the server`)));
  }

  static connect(host: string, port: number, timeoutMs = 5000): Promise<MemClient> {
    const address = `${host}:${port}`;
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new MemClientError(`memserver ${address}: no connection after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(new MemClientError(`memserver ${address}: cannot connect: ${e.message}`));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new MemClient(socket, address, timeoutMs));
      });
    });
  }

  /** The handshake: proves the key without sending it, checks the server's proof, then WELCOME. */
  async hello(token: Buffer, vmid: number): Promise<Welcome> {
    this.vmid = vmid;
    const nonce = randomBytes(NONCE_BYTES);
    const frame = encodeHello({ vmid, nonce });
    this.handshake = { token, hello: frame.subarray(5), nonce };
    const welcome = this.wait(MsgType.Welcome); // the CHALLENGE is answered in deliver()
    if (!this.failure) this.socket.write(frame);
    return decodeWelcome(await welcome);
  }

  /** The pages of `gfns` (≤ MAX_GET), concatenated in the order asked. */
  async get(gfns: readonly number[]): Promise<Buffer> {
    const r = decodePages(await this.request(encodeGet(gfns), MsgType.Pages));
    if (r.gfns.length !== gfns.length || r.gfns.some((g, i) => g !== gfns[i])) {
      throw this.fail(new MemClientError(`memserver ${this.address}: PAGES does not answer the GET`));
    }
    return r.data;
  }

  async ping(nonce: number, payload: Buffer = Buffer.alloc(0)): Promise<Buffer> {
    const r = decodeEcho(await this.request(encodePing(nonce, payload), MsgType.Pong));
    if (r.nonce !== nonce) throw this.fail(new MemClientError(`memserver ${this.address}: PONG for nonce ${r.nonce}, sent ${nonce}`));
    return r.payload;
  }

  /** Says this clone is finished, then waits for the server to hang up. */
  async bye(): Promise<void> {
    if (this.vmid === undefined) throw new MemClientError(`memserver ${this.address}: BYE before HELLO`);
    this.sendFrame(encodeBye(this.vmid));
    await this.within(this.closed, 'to hang up after BYE');
  }

  /** Writes raw bytes (fuzzing, malformed frames). */
  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Writes one encoded frame, sealed once the handshake is done (tests: frames the API would not send). */
  sendFrame(frame: Buffer): void {
    if (this.tx) this.socket.write(this.tx.seal(frame));
    else this.socket.write(frame);
  }

  /** Waits for the next frame of `type`; an ERROR rejects with its code. */
  expect(type: number): Promise<Buffer> {
    return this.wait(type);
  }

  close(): void {
    this.socket.destroy();
  }

  private request(frame: Buffer, type: number): Promise<Buffer> {
    const p = this.wait(type);
    if (!this.failure) this.sendFrame(frame);
    return p;
  }

  private wait(type: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new MemClientError(`memserver ${this.address}: no answer after ${this.timeoutMs} ms`)), this.timeoutMs);
      this.waiters.push({ type, resolve, reject, timer });
    });
  }

  /** Checks the server's proof, derives the keys, answers with PROOF; synchronous, so the next frame opens with them. */
  private challenge(f: Frame): void {
    const h = this.handshake;
    this.handshake = undefined;
    if (!h) return void this.fail(new MemClientError(`memserver ${this.address}: CHALLENGE without a HELLO`));
    let c;
    try {
      c = decodeChallenge(f.payload);
    } catch (e) {
      return void this.fail(new MemClientError(`memserver ${this.address}: ${(e as ProtocolError).message}`, (e as ProtocolError).code));
    }
    const k = sessionKeys(h.token, h.hello, f.payload.subarray(0, CHALLENGE_HEAD_BYTES), this.vmid!, c.flags, h.nonce, c.nonce);
    if (!proofsEqual(c.proof, k.serverProof)) {
      return void this.fail(new MemClientError(`memserver ${this.address}: the server did not prove this fork's key (not the fork's memserver, or a wrong key)`));
    }
    this.socket.write(encodeProof(k.clientProof));
    this.plaintext = (c.flags & FLAG_PLAINTEXT) !== 0;
    if (!this.plaintext) {
      this.rx = new Opener(k.serverToClient);
      this.tx = new Sealer(k.clientToServer);
    }
  }

  private deliver(f: Frame): void {
    if (f.type === MsgType.Challenge && this.handshake) return this.challenge(f);
    const w = this.waiters.shift();
    if (f.type === MsgType.Error) {
      const { code, message } = decodeError(f.payload);
      const e = new MemClientError(`memserver ${this.address} refused (code ${code}): ${message}`, code);
      if (w) {
        clearTimeout(w.timer);
        w.reject(e);
      }
      return void this.fail(e);
    }
    if (!w) return void this.fail(new MemClientError(`memserver ${this.address}: unexpected message type ${f.type}`));
    clearTimeout(w.timer);
    if (f.type !== w.type) {
      w.reject(this.fail(new MemClientError(`memserver ${this.address}: expected message type ${w.type}, got ${f.type}`)));
      return;
    }
    w.resolve(f.payload);
  }

  /** Fails every pending request with `e` (the first failure wins) and drops the connection. */
  private fail(e: Error): Error {
    this.failure ??= e;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.failure);
    }
    this.socket.destroy();
    return this.failure;
  }

  private async within<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MemClientError(`memserver ${this.address}: no answer after ${this.timeoutMs} ms ${what}`)), this.timeoutMs);
    });
    try {
      return await Promise.race([p, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
