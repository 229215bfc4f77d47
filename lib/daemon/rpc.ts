/**
 * Requests and replies over a message connection, in both directions at once (the master
 * sends commands to a host on the same link the host sends guest requests on). Incoming
 * requests are checked against this side's table before the handler sees them; whatever the
 * handler throws becomes an error reply with its code. A peer can have at most maxInFlight
 * requests waiting, so a flood cannot pile up work. A handler's signal aborts when the peer
 * stops sending or closes, or sends `cancel {ref}` (id 0, unanswered) for that request: a
 * handler that may wait without end (join) stops then, the others may still answer. A call that
 * times out or whose own signal aborts sends that cancel, so the peer stops working for nobody.
 */
import { SfError, fromWireError, toWireError } from './errors.js';
import type { MessageConnection } from './framed-socket.js';
import { MAX_ID, checkRequest, errorReply, parseEnvelope, reply, request } from './protocol.js';
import type { Check } from './schema.js';

export interface RpcOptions {
  /** The request types this side answers, with their checkers. */
  requests: Record<string, Check<unknown>>;
  handle: (type: string, body: unknown, signal: AbortSignal) => Promise<unknown>;
  maxInFlight?: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

export class RpcPeer {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private inFlight = 0;
  private ended = false;
  /** The requests this side is answering, by the peer's id. */
  private readonly answering = new Map<number, AbortController>();

  constructor(readonly conn: MessageConnection, private readonly opts: RpcOptions) {
    conn.onMessage((m) => {
      if (!m.ok) conn.send(errorReply(0, { code: 'bad-frame', message: m.reason }));
      else this.receive(m.value);
    });
    conn.onEnd(() => {
      // Nothing more will come: our own calls cannot be answered, but what the peer asked is.
      this.ended = true;
      this.failPending('peer finished sending');
      this.abortAnswers('peer finished sending');
      if (this.inFlight === 0) conn.close('peer finished sending');
    });
    conn.onClose((reason) => {
      this.failPending(reason);
      this.abortAnswers(reason);
    });
  }

  private abortAnswers(reason: string): void {
    for (const a of this.answering.values()) a.abort(new SfError('channel-closed', `${this.conn.peer}: ${reason}`));
  }

  private failPending(reason: string): void {
    for (const p of this.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(new SfError('channel-closed', `${this.conn.peer}: ${reason}`));
    }
    this.pending.clear();
  }

  get closed(): boolean {
    return this.conn.closed;
  }

  /** Sends a request; resolves with the peer's result or rejects with its error (as SfError). */
  call(type: string, body: object, timeoutMs?: number, signal?: AbortSignal): Promise<unknown> {
    if (this.conn.closed) return Promise.reject(new SfError('channel-closed', `${this.conn.peer}: connection closed`));
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const id = this.nextId;
    this.nextId = this.nextId >= MAX_ID ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      const giveUp = (e: Error) => {
        if (!this.settle(id)) return;
        this.conn.send(request(0, 'cancel', { ref: id }));
        reject(e);
      };
      const timer = timeoutMs === undefined ? null : setTimeout(() => {
        giveUp(new SfError('timeout', `${this.conn.peer} did not answer ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onAbort = () => giveUp(signal!.reason as Error);
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        resolve: (v) => { done(); resolve(v); },
        reject: (e) => { done(); reject(e); },
        timer,
      });
      try {
        this.conn.send(request(id, type, body));
      } catch (e) {
        this.settle(id)?.reject(e as Error);
      }
    });
  }

  close(reason?: string): void {
    this.conn.close(reason);
  }

  private receive(value: unknown): void {
    const parsed = parseEnvelope(value);
    if (!parsed.ok) {
      this.conn.send(errorReply(parsed.id, parsed.error));
      return;
    }
    const m = parsed.message;
    if (m.kind === 'request' && m.type === 'cancel') {
      if (typeof m.body.ref === 'number') this.answering.get(m.body.ref)?.abort(new SfError('channel-closed', `${this.conn.peer} cancelled its request`));
      return;
    }
    if (m.kind === 'reply') this.settle(m.id)?.resolve(m.result);
    else if (m.kind === 'error') this.settle(m.id)?.reject(fromWireError(m.error));
    else this.answer(m.id, m.type, m.body).catch((e) => this.conn.close(`cannot answer: ${(e as Error).message}`));
  }

  private async answer(id: number, type: string, body: Record<string, unknown>): Promise<void> {
    if (this.inFlight >= (this.opts.maxInFlight ?? 64)) {
      this.conn.send(errorReply(id, { code: 'busy', message: `too many requests in flight on this connection (${this.inFlight})` }));
      return;
    }
    this.inFlight++;
    const abort = new AbortController();
    this.answering.set(id, abort);
    try {
      const checked = checkRequest(this.opts.requests, type, body);
      const result = await this.opts.handle(checked.type, checked.body, abort.signal);
      this.conn.send(reply(id, result ?? {}));
    } catch (e) {
      this.conn.send(errorReply(id, toWireError(e)));
    } finally {
      if (this.answering.get(id) === abort) this.answering.delete(id);
      this.inFlight--;
      if (this.ended && this.inFlight === 0) this.conn.close('peer finished sending');
    }
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    return p;
  }
}
