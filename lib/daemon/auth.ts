/**
 * Mutual challenge/response between a host daemon and the master over the host's own key
 * (host-key.ts: the host holds it, the master derives it from the cluster key and the name in
 * hello):
 *
 *   host   -> master  hello     { role: "host", host, nonce: Nh, link: "aes-256-gcm-v1", identity: "host-key-v1" }
 *   master -> host    challenge { nonce: Nm, proof: HMAC(hostKey, "snowflock-v1 master" | host | Nh | Nm) }
 *   host   -> master  auth      { proof: HMAC(hostKey, "snowflock-v1 host" | host | Nm | Nh) }
 *   master -> host    welcome   {}
 *
 * Each side proves the key over the other side's fresh nonce, so a recorded handshake cannot be
 * replayed; the two directions use different labels, so a proof cannot be reflected back. The
 * name is the credential's: a host that says another name than its key's cannot make the proof.
 * Either side that sees a wrong proof sends an auth-failed error and hangs up. Nothing else is
 * accepted before welcome. Right after welcome both sides seal the link (link-cipher.ts) with
 * keys derived from the host key, Nh and Nm: every later frame, register first, is
 * authenticated, in sequence, and bound to this connection and the name the host proved here.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SfError, fromWireError } from './errors.js';
import type { MessageConnection } from './framed-socket.js';
import { checkRequest, errorReply, handshake, parseEnvelope, request, type Parsed } from './protocol.js';
import { KEY_BYTES } from './key.js';
import { deriveHostKey } from './host-key.js';
import { LINK_CIPHER, linkKeys } from './link-cipher.js';

export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** hello's identity: what key the host proves (a daemon from before host keys sends none). */
export const HOST_IDENTITY = 'host-key-v1';

type Step = keyof typeof handshake;

export function proof(key: Buffer, label: 'master' | 'host', host: string, first: string, second: string): string {
  return createHmac('sha256', key).update(`snowflock-v1 ${label}\0${host}\0${first}\0${second}`).digest('hex');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length === 32 && timingSafeEqual(x, y);
}

function checkKey(key: Buffer, what: string): void {
  if (key.length !== KEY_BYTES) throw new Error(`the ${what} must be ${KEY_BYTES} bytes`);
}

/**
 * Host side, proving `hostKey` (this host's key, host-key.ts) under the name `host`. Resolves
 * once the master proved the same key and accepted ours; the link is sealed then.
 */
export async function authenticateToMaster(conn: MessageConnection, hostKey: Buffer, host: string, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<void> {
  checkKey(hostKey, 'host key');
  const nh = randomBytes(32).toString('hex');
  conn.send(request(0, 'hello', { role: 'host', host, nonce: nh, link: LINK_CIPHER, identity: HOST_IDENTITY }));
  const ch = await expect(conn, 'challenge', timeoutMs);
  if (!same(ch.proof, proof(hostKey, 'master', host, nh, ch.nonce))) {
    fail(conn, `the master could not prove it holds host ${host}'s key: it has another cluster key, or this host's key is not ${host}'s`);
  }
  conn.send(request(0, 'auth', { proof: proof(hostKey, 'host', host, ch.nonce, nh) }));
  await expect(conn, 'welcome', timeoutMs);
  conn.secure(linkKeys('host', hostKey, host, nh, ch.nonce));
}

/**
 * Master side, holding the cluster key. Resolves with the host name the peer proved it may speak
 * for (it holds that name's host key); the link is sealed then.
 */
export async function authenticateHost(conn: MessageConnection, clusterKey: Buffer, timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<string> {
  checkKey(clusterKey, 'cluster key');
  const hello = await expect(conn, 'hello', timeoutMs);
  const key = deriveHostKey(clusterKey, hello.host);
  const nm = randomBytes(32).toString('hex');
  conn.send(request(0, 'challenge', { nonce: nm, proof: proof(key, 'master', hello.host, hello.nonce, nm) }));
  const auth = await expect(conn, 'auth', timeoutMs);
  if (!same(auth.proof, proof(key, 'host', hello.host, nm, hello.nonce))) {
    fail(conn, `host ${hello.host} could not prove it holds host ${hello.host}'s key (a key of another host, or of another cluster)`);
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
