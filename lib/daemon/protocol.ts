/**
 * The sf_* wire protocol, version 1, between guest and host daemon and between host daemon and
 * master. A frame is a u32 big-endian length and that many bytes of UTF-8 JSON (frame.ts); each
 * JSON message is an envelope:
 *
 *   request  { "v": 1, "id": 7, "type": "clone", ...fields }
 *   reply    { "v": 1, "id": 7, "type": "ok", "result": {...} }
 *   error    { "v": 1, "id": 7, "type": "error", "error": { "code", "message", "field"? } }
 *
 * ids are chosen by the side that sends the request (1..2^31-1; 0 is the handshake and "no id
 * could be read"). Both directions carry requests on the master link, so replies are told apart
 * by type, not by id. A frame above MAX_FRAME_BYTES, a message that is not such an envelope,
 * another version, or a request that fails its checker is answered with an error naming the
 * problem; nothing a peer sends can throw out of here.
 */
import { ERROR_CODES, SfError, type WireError } from './errors.js';
import { SchemaError, type Check } from './schema.js';

export * from './messages.js';

export const PROTOCOL_VERSION = 1;
/** Every message fits a 64 KiB vchan ring in one go. */
export const MAX_FRAME_BYTES = 64 * 1024;
export const MAX_ID = 0x7fffffff;

export type Envelope =
  | { kind: 'request'; id: number; type: string; body: Record<string, unknown> }
  | { kind: 'reply'; id: number; result: unknown }
  | { kind: 'error'; id: number; error: WireError };

export type Parsed = { ok: true; message: Envelope } | { ok: false; id: number; error: WireError };

export function request(id: number, type: string, body: object): object {
  return { ...body, v: PROTOCOL_VERSION, id, type };
}

export function reply(id: number, result: unknown): object {
  return { v: PROTOCOL_VERSION, id, type: 'ok', result };
}

/** Messages are cut to 2000 characters so that an error reply always fits a frame. */
export function errorReply(id: number, error: WireError): object {
  return { v: PROTOCOL_VERSION, id, type: 'error', error: { ...error, message: error.message.slice(0, 2000) } };
}

/** Reads the envelope of any decoded JSON value; the body of a request is checked by checkRequest. */
export function parseEnvelope(value: unknown): Parsed {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return bad(0, 'bad-frame', 'a message must be a JSON object');
  }
  const m = value as Record<string, unknown>;
  const id = typeof m.id === 'number' && Number.isSafeInteger(m.id) && m.id >= 0 && m.id <= MAX_ID ? m.id : undefined;
  if (m.v !== PROTOCOL_VERSION) {
    return bad(id ?? 0, 'version-mismatch', `protocol version ${JSON.stringify(m.v)} is not supported: this daemon speaks version ${PROTOCOL_VERSION}`, 'v');
  }
  if (id === undefined) return bad(0, 'bad-request', `id must be an integer from 0 to ${MAX_ID}`, 'id');
  if (typeof m.type !== 'string' || m.type.length === 0 || m.type.length > 32) return bad(id, 'bad-request', 'type must be a message type', 'type');
  if (m.type === 'ok') {
    if (!('result' in m)) return bad(id, 'bad-request', 'a reply needs a result', 'result');
    return { ok: true, message: { kind: 'reply', id, result: m.result } };
  }
  if (m.type === 'error') {
    const e = m.error as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || typeof e.message !== 'string' || !ERROR_CODES.includes(e.code as never)) {
      return bad(id, 'bad-request', 'an error reply needs error.code (a known code) and error.message', 'error');
    }
    const error: WireError = { code: e.code as WireError['code'], message: e.message.slice(0, 2000) };
    if (typeof e.field === 'string') error.field = e.field.slice(0, 200);
    return { ok: true, message: { kind: 'error', id, error } };
  }
  const { v: _v, id: _id, type, ...body } = m;
  return { ok: true, message: { kind: 'request', id, type, body } };
}

/** Checks a request against the table of one link; throws SfError naming the problem. */
export function checkRequest<T extends Record<string, Check<unknown>>>(
  table: T,
  type: string,
  body: Record<string, unknown>,
): { type: keyof T & string; body: unknown } {
  if (!Object.hasOwn(table, type)) {
    throw new SfError('unknown-type', `unknown message type ${JSON.stringify(type)} (this link carries: ${Object.keys(table).join(', ')})`, 'type');
  }
  try {
    return { type, body: table[type]!(body, '') };
  } catch (e) {
    if (e instanceof SchemaError) throw new SfError('bad-request', `${type}: ${e.message}`, e.field);
    throw e;
  }
}

function bad(id: number, code: WireError['code'], message: string, field?: string): Parsed {
  return { ok: false, id, error: { code, message, ...(field ? { field } : {}) } };
}
