/**
 * Errors that cross the wire. Every refusal has a stable `code` (the cluster managers' codes
 * plus the daemons' own), so the guest library and shell scripts act on codes, not messages.
 */
import { ClusterError, type ClusterErrorCode } from '../cluster/errors.js';
import { SchemaError } from './schema.js';

export type DaemonErrorCode =
  /** a frame that is too large, empty, or not JSON */
  | 'bad-frame'
  /** a well-framed message with a missing or malformed field (`field` names it) */
  | 'bad-request'
  /** the peer speaks another protocol version */
  | 'version-mismatch'
  /** a message type this link does not carry */
  | 'unknown-type'
  /** a daemon spoke before finishing the key handshake */
  | 'not-authenticated'
  /** the peer does not hold the cluster key */
  | 'auth-failed'
  /** only the parent of a family may request tickets, clone, join and kill */
  | 'not-parent'
  /** only a clone may sf_exit */
  | 'not-child'
  /** join/kill with a ticket of this family that no sf_clone used */
  | 'ticket-not-used'
  /** the fork could not be completed; no clone of it is left */
  | 'clone-failed'
  /** a host needed for the operation is not connected to the master */
  | 'host-unavailable'
  /** the host daemon has no connection to the master right now */
  | 'master-unavailable'
  | 'timeout'
  /** too many requests in flight on one connection */
  | 'busy'
  /** the connection closed before the reply arrived */
  | 'channel-closed'
  /** a bug or an unexpected failure; the message says what */
  | 'internal';

export type SfErrorCode = ClusterErrorCode | DaemonErrorCode;

export const ERROR_CODES: readonly SfErrorCode[] = [
  'invalid-request', 'too-many-clones', 'too-many-tickets', 'slot-too-large', 'no-capacity', 'unknown-ticket', 'ticket-expired',
  'ticket-released', 'ticket-in-use', 'wrong-family', 'manager-closed', 'backend-failed',
  'bad-frame', 'bad-request', 'version-mismatch', 'unknown-type', 'not-authenticated', 'auth-failed', 'not-parent',
  'not-child', 'ticket-not-used', 'clone-failed', 'host-unavailable', 'master-unavailable', 'timeout', 'busy',
  'channel-closed', 'internal',
];

export class SfError extends Error {
  override name = 'SfError';
  constructor(readonly code: SfErrorCode, message: string, readonly field?: string) {
    super(message);
  }
}

export interface WireError {
  code: SfErrorCode;
  message: string;
  field?: string;
}

/** Any thrown value as the error a peer gets: refusals keep their code, anything else is "internal". */
export function toWireError(e: unknown): WireError {
  if (e instanceof SfError) return { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) };
  if (e instanceof SchemaError) return { code: 'bad-request', message: e.message, field: e.field };
  if (e instanceof ClusterError) {
    const field = (e as { field?: unknown }).field;
    return { code: e.code, message: e.message, ...(typeof field === 'string' ? { field } : {}) };
  }
  return { code: 'internal', message: e instanceof Error ? e.message : String(e) };
}

export function fromWireError(w: WireError): SfError {
  return new SfError(w.code, w.message, w.field);
}
