/**
 * Mutual challenge/response between a host daemon and the master, both holding the cluster key:
 *
 *   host   -> master  hello     { role: "host", host, nonce: Nh, link: "aes-256-gcm-v1" }
 *   master -> host    challenge { nonce: Nm, proof: HMAC(key, "snowflock-v1 master" | host | Nh | Nm) }
 *   host   -> master  auth      { proof: HMAC(key, "snowflock-v1 host" | host | Nm | Nh) }
 *   master -> host    welcome   {}
 *
 * Each side proves the key over the other side's fresh nonce, so a recorded handshake cannot be
 * replayed; the two directions use different labels, so a proof cannot be reflected back. Either
 * side that sees a wrong proof sends an auth-failed error and hangs up. Nothing else is accepted
 * before welcome. Right after welcome both sides seal the link (link-cipher.ts) with keys derived
 * from the cluster key, Nh, Nm and the host's name: every later frame, register first, is
 * authenticated, in sequence, and bound to the name the host proved here.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SfError, fromWireError } from './errors.js';
import type { MessageConnection } from './framed-socket.js';
import { checkRequest, errorReply, handshake, parseEnvelope, request, type Parsed } from './protocol.js';
import { KEY_BYTES } from './key.js';
import { LINK_CIPHER, linkKeys } from './link-cipher.js';

export const HANDSHAKE_TIMEOUT_MS = 10_000;

type Step = keyof typeof handshake;

export function proof(key: Buffer, label: 'master' | 'host', host: string, first: string, second: string): string {
  return createHmac('sha256', key).update(`snowflock-v1 ${label}\0${host}\0${first}\0${second}`).digest('hex');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length === 32 && timingSafeEqual(x, y);
}

function checkKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new Error(`the cluster key must be ${KEY_BYTES} bytes`);
}

/** Host side. Resolves once the master proved the key and accepted ours; the link is sealed then. */
export async function authenticateToMaster(conn: MessageConnection, key: Buffer, host: string, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<void> {
  checkKey(key);
  const nh = randomBytes(32).toString('hex');
  conn.send(request(0, 'hello', { role: 'host', host, nonce: nh, link: LINK_CIPHER }));
  const ch = await expect(conn, 'challenge', timeoutMs);
  if (!same(ch.proof, proof(key, 'master', host, nh, ch.nonce))) {
    fail(conn, 'the master could not prove it holds this cluster key');
  }
  conn.send(request(0, 'auth', { proof: proof(key, 'host', host, ch.nonce, nh) }));
  await expect(conn, 'welcome', timeoutMs);
  conn.secure(linkKeys('host', key, host, nh, ch.nonce));
}

/** Master side. Resolves with the host name the peer proved it may speak for; the link is sealed then. */
export async function authenticateHost(conn: MessageConnection, key: Buffer, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<string> {
  checkKey(key);
  const hello = await expect(conn, 'hello', timeoutMs);
  const nm = randomBytes(32).toString('hex');
  conn.send(request(0, 'challenge', { nonce: nm, proof: proof(key, 'master', hello.host, hello.nonce, nm) }));
  const auth = await expect(conn, 'auth', timeoutMs);
  if (!same(auth.proof, proof(key, 'host', hello.host, nm, hello.nonce))) {
    fail(conn, `host ${hello.host} could not prove it holds the cluster key`);
  }
  conn.send(request(0, 'welcome', {}));
  conn.secure(linkKeys('master', key, hello.host, hello.nonce, nm));
  return hello.host;
}

function fail(conn: MessageConnection, message: string): never {
  conn.send(errorReply(0, { code: 'auth-failed', message }));
  conn.close(message);
  throw new SfError('auth-failed', message);
}

type StepBody<S extends Step> = ReturnType<(typeof handshake)[S]>;

/** The next message must be this handshake step; an error from the peer is thrown as its SfError. */
async function expect<S extends Step>(conn: MessageConnection, step: S, timeoutMs: number): Promise<StepBody<S>> {
  let parsed: Parsed;
  try {
    const m = await conn.next(timeoutMs);
    parsed = m.ok ? parseEnvelope(m.value) : { ok: false, id: 0, error: { code: 'bad-frame', message: m.reason } };
  } catch (e) {
    conn.close('handshake failed');
    throw new SfError('auth-failed', `handshake with ${conn.peer} failed: ${(e as Error).message}`);
  }
  if (!parsed.ok) {
    conn.send(errorReply(parsed.id, parsed.error));
    conn.close(parsed.error.message);
    throw fromWireError(parsed.error);
  }
  const m = parsed.message;
  if (m.kind === 'error') {
    conn.close(m.error.message);
    throw fromWireError(m.error);
  }
  if (m.kind !== 'request' || m.type !== step) {
    const what = m.kind === 'request' ? m.type : m.kind;
    const message = `expected ${step} in the key handshake, got ${what}`;
    conn.send(errorReply(m.id, { code: 'not-authenticated', message }));
    conn.close(message);
    throw new SfError('not-authenticated', message);
  }
  try {
    return checkRequest(handshake, step, m.body).body as StepBody<S>;
  } catch (e) {
    const err = e as SfError;
    conn.send(errorReply(0, { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) }));
    conn.close(err.message);
    throw e;
  }
}
