// The two-box jobs' side channel (86.guest-api-hosts, 68.disk-api-hosts): box 1 runs the master
// and hands box 2 the cluster key over one TCP connection that stays open for the whole run;
// when its parent has joined it asks box 2 for a report (what box 2's clones printed and what it
// still holds). When box 1's part fails, abort() tells box 2 (now or whenever it connects) so it
// fails at once instead of waiting out its timeout.
import net from 'node:net';
import { sleep } from './helpers.js';

export interface SideServer<R> {
  /** box 2's connection, once it has the key */
  box2: Promise<net.Socket>;
  /** Asks box 2 for its report on the job of `parentName`. */
  report(parentName: string): Promise<R>;
  abort(why: string): void;
  close(): void;
}

/** Box 1's end: listens on host:port and hands each box 2 that connects the key. */
export function serveSide<R>(host: string, port: number, key: Buffer): SideServer<R> {
  let connected!: (s: net.Socket) => void;
  const box2 = new Promise<net.Socket>((r) => { connected = r; });
  let aborted: string | null = null;
  const server = net.createServer((s) => {
    if (aborted !== null) return void s.end(`abort ${aborted}\n`);
    s.write(`${key.toString('hex')}\n`);
    connected(s);
  }).listen(port, host);
  const report = async (parentName: string): Promise<R> => {
    const s = await box2;
    let data = '';
    const done = new Promise<R>((resolve, reject) => {
      s.on('data', (d) => { data += d; if (data.endsWith('\n')) resolve(JSON.parse(data) as R); });
      s.on('close', () => reject(new Error(`box 2 closed the side channel: ${data}`)));
    });
    s.write(`report ${parentName}\n`);
    return done;
  };
  const abort = (why: string) => {
    aborted = why.split('\n')[0]!.slice(0, 200);
    void Promise.race([box2, Promise.resolve(null)]).then((s) => s?.end(`abort ${aborted}\n`));
  };
  return { box2, report, abort, close: () => server.close() };
}

/** Box 2's end: the cluster key, then (when box 1 asks) the parent whose job to report on. */
export interface SideClient<R> {
  key: Buffer;
  /** Resolves with the parent's name once box 1 asks for the report. */
  reportRequested(): Promise<string>;
  send(report: R): void;
}

/** Connects to box 1 (which may still be running its single-host suites: minutes under TCG). */
export async function joinSide<R>(host: string, port: number, timeoutMs: number): Promise<SideClient<R>> {
  const s = await connectWithRetry(port, host, timeoutMs);
  const lines = readLines(s);
  const key = Buffer.from(box1Says(await lines.next()), 'hex');
  return {
    key,
    reportRequested: async () => box1Says(await lines.next()).split(' ')[1] ?? '', // "report <parent name>"
    send: (report) => s.end(`${JSON.stringify(report)}\n`),
  };
}

/** A line from box 1; its "abort <why>" ends box 2's part with box 1's reason. */
function box1Says(line: string): string {
  const l = line.trim();
  if (l.startsWith('abort ')) throw new Error(`box 1 gave up, so box 2 stops: ${l.slice('abort '.length)}`);
  return l;
}

async function connectWithRetry(port: number, host: string, timeoutMs: number): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await new Promise<net.Socket | null>((resolve) => {
      const c = net.connect(port, host);
      c.once('connect', () => resolve(c));
      c.once('error', () => resolve(null));
    });
    if (s) return s;
    if (Date.now() > deadline) throw new Error(`box 1 never opened its side channel at ${host}:${port}`);
    await sleep(1000);
  }
}

/** Line by line from a socket: next() resolves with the next line, rejects when it closes first. */
function readLines(s: net.Socket): { next(): Promise<string> } {
  let buf = '';
  const waiting: { resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  const ready: string[] = [];
  s.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiting.shift();
      if (w) w.resolve(line);
      else ready.push(line);
    }
  });
  s.on('close', () => { for (const w of waiting.splice(0)) w.reject(new Error('box 1 closed the side channel')); });
  return {
    next: () => (ready.length ? Promise.resolve(ready.shift()!) : new Promise((resolve, reject) => waiting.push({ resolve, reject }))),
  };
}
