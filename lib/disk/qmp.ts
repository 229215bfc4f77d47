// A QMP client: QEMU's JSON monitor protocol over a unix socket. One JSON object a line; the
// server greets, the client negotiates capabilities, then each command carries an id and its
// answer (`return` or `error`) carries it back; events arrive in between, unasked.
import { connect, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';

/** A command QEMU refused: the command, QEMU's error class and its description. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`${command}: ${desc} (QEMU ${errorClass})`);
    this.name = 'QmpError';
  }
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export interface QmpConnectOptions {
  /** how long the greeting may take (a monitor already in use by another client never greets) */
  timeoutMs?: number;
  /** default time a command may take (default 30 s) */
  commandTimeoutMs?: number;
}

export class QmpClient extends EventEmitter {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedReason: string | undefined;
  /** events received, newest last (bounded), for waits that start after the event came */
  private readonly recent: QmpEvent[] = [];
  /** events shifted out of `recent` */
  private dropped = 0;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
    readonly greeting: QmpGreeting,
    private readonly commandTimeoutMs: number,
  ) {
    super();
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, o: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = o.timeoutMs ?? 10_000;
    const socket = connect(path);
    let buffered = '';
    const greeting = await new Promise<QmpGreeting>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`QMP ${path}: no greeting in ${timeoutMs} ms (another client holds this monitor?)`)), timeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(e);
      };
      socket.on('error', (e) => fail(new Error(`QMP ${path}: ${e.message}`)));
      socket.on('close', () => fail(new Error(`QMP ${path}: closed before the greeting`)));
      socket.on('data', (chunk) => {
        buffered += chunk.toString('utf8');
        const nl = buffered.indexOf('\n');
        if (nl < 0) return;
        let msg: { QMP?: QmpGreeting };
        try {
          msg = JSON.parse(buffered.slice(0, nl)) as { QMP?: QmpGreeting };
        } catch {
          return fail(new Error(`QMP ${path}: greeting is not JSON: ${buffered.slice(0, 200)}`));
        }
        if (!msg.QMP) return fail(new Error(`QMP ${path}: expected a greeting, got ${buffered.slice(0, 200)}`));
        clearTimeout(timer);
        socket.removeAllListeners();
        buffered = buffered.slice(nl + 1);
        resolve(msg.QMP);
      });
    });
    const client = new QmpClient(socket, path, greeting, o.commandTimeoutMs ?? 30_000);
    client.buffer = buffered;
    socket.on('data', (chunk) => client.onData(chunk.toString('utf8')));
    socket.on('error', (e) => client.onClose(e.message));
    socket.on('close', () => client.onClose('connection closed'));
    await client.execute('qmp_capabilities');
    return client;
  }

  /** Runs one command; resolves with its `return`, rejects with a QmpError naming it. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, o: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closedReason) return Promise.reject(new Error(`QMP ${this.path}: cannot run ${command}: ${this.closedReason}`));
    const id = `sf-${this.nextId++}`;
    const timeoutMs = o.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${this.path}: ${command} not answered in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  /**
   * Resolves with the first event named `name` that `match` accepts, among those received from
   * `since` (an index from eventMark(), so an event that came before the wait began counts).
   */
  waitEvent(name: string, match: (data: Record<string, unknown>) => boolean, o: { since?: number; timeoutMs?: number } = {}): Promise<QmpEvent> {
    const seen = this.recent.slice(Math.max(0, (o.since ?? this.recent.length) - this.dropped)).find((e) => e.event === name && match(e.data));
    if (seen) return Promise.resolve(seen);
    const timeoutMs = o.timeoutMs ?? this.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name || !match(e.data)) return;
        done();
        resolve(e);
      };
      const onClosed = (reason: string) => {
        done();
        reject(new Error(`QMP ${this.path}: closed (${reason}) while waiting for ${name}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`QMP ${this.path}: no ${name} event in ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('closed', onClosed);
      };
      this.on('event', onEvent);
      this.on('closed', onClosed);
    });
  }

  /** A position in the event history for waitEvent's `since`. */
  eventMark(): number {
    return this.dropped + this.recent.length;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
    this.onClose('closed by this client');
  }

  private onData(text: string): void {
    this.buffer += text;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: { id?: unknown; return?: unknown; error?: { class?: string; desc?: string }; event?: string; data?: Record<string, unknown>; timestamp?: QmpEvent['timestamp'] };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      this.emit('protocol-error', new Error(`QMP ${this.path}: not JSON: ${line.slice(0, 200)}`));
      return;
    }
    if (typeof msg.event === 'string') {
      const e: QmpEvent = { event: msg.event, data: msg.data ?? {}, ...(msg.timestamp ? { timestamp: msg.timestamp } : {}) };
      this.recent.push(e);
      if (this.recent.length > 256) {
        this.recent.shift();
        this.dropped++;
      }
      this.emit('event', e);
      return;
    }
    const p = typeof msg.id === 'string' ? this.pending.get(msg.id) : undefined;
    if (!p) {
      this.emit('protocol-error', new Error(`QMP ${this.path}: answer to no command: ${line.slice(0, 200)}`));
      return;
    }
    this.pending.delete(msg.id as string);
    clearTimeout(p.timer);
    if (msg.error) p.reject(new QmpError(p.command, msg.error.class ?? 'unknown', msg.error.desc ?? 'no description'));
    else p.resolve(msg.return);
  }

  private onClose(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`QMP ${this.path}: ${reason} before ${p.command} was answered`));
      this.pending.delete(id);
    }
    this.emit('closed', reason);
  }
}
