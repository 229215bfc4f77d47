/** Checks a ticket request before any manager acts on it, so every manager refuses alike. */
import { InvalidRequestError, TooManyClonesError } from './errors.js';
import type { TicketRequest } from './types.js';

/**
 * Family ids end up in batch-system job names and comments: keep them to characters that
 * need no quoting anywhere.
 */
const FAMILY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function checkFamily(family: unknown): asserts family is string {
  if (typeof family !== 'string' || !FAMILY_PATTERN.test(family)) {
    throw new InvalidRequestError('family', `family must be 1-128 characters of A-Z a-z 0-9 . _ : - (starting alphanumeric), got ${JSON.stringify(family)}`);
  }
}

function checkPositiveInteger(field: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidRequestError(field, `${field} must be a positive integer, got ${JSON.stringify(value)}`);
  }
}

/** Returns the request with defaults filled in, or throws the first problem found. */
export function checkTicketRequest(req: TicketRequest, maxClonesPerTicket: number): Required<TicketRequest> {
  if (typeof req !== 'object' || req === null) throw new InvalidRequestError('request', 'a ticket request must be an object');
  checkFamily(req.family);
  checkPositiveInteger('n', req.n);
  if (req.n > maxClonesPerTicket) throw new TooManyClonesError(req.n, maxClonesPerTicket);
  checkPositiveInteger('vcpusPerClone', req.vcpusPerClone);
  checkPositiveInteger('memoryMiBPerClone', req.memoryMiBPerClone);
  if (req.hierarchical !== undefined && typeof req.hierarchical !== 'boolean') {
    throw new InvalidRequestError('hierarchical', `hierarchical must be true or false, got ${JSON.stringify(req.hierarchical)}`);
  }
  return { ...req, hierarchical: req.hierarchical ?? false };
}
