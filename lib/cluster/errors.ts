/**
 * Typed refusals of the cluster managers. Each carries a stable `code` so a daemon can put it on
 * the wire to the guest's sf_* library without parsing messages.
 */
import type { EndReason } from './types.js';

export type ClusterErrorCode =
  | 'invalid-request'
  | 'too-many-clones'
  | 'too-many-tickets'
  | 'slot-too-large'
  | 'no-capacity'
  | 'unknown-ticket'
  | 'ticket-expired'
  | 'ticket-released'
  | 'ticket-in-use'
  | 'wrong-family'
  | 'manager-closed'
  | 'backend-failed';

export abstract class ClusterError extends Error {
  abstract readonly code: ClusterErrorCode;
}

/** A request field that is missing, of the wrong type or out of range (n <= 0, 0 vCPUs, ...). */
export class InvalidRequestError extends ClusterError {
  override name = 'InvalidRequestError';
  readonly code = 'invalid-request';
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

/** n above the manager's per-ticket limit. Asking for fewer is the fix; "up to n" does not clip it. */
export class TooManyClonesError extends ClusterError {
  override name = 'TooManyClonesError';
  readonly code = 'too-many-clones';
  constructor(readonly requested: number, readonly limit: number) {
    super(`cannot ask for ${requested} clones in one ticket: the limit is ${limit}`);
  }
}

/** The family already holds as many unused tickets as it may: use or release one first. */
export class TooManyTicketsError extends ClusterError {
  override name = 'TooManyTicketsError';
  readonly code = 'too-many-tickets';
  constructor(readonly family: string, readonly limit: number) {
    super(`family ${family} already holds ${limit} unused tickets, the most it may: use one (sf_clone) or let one expire first`);
  }
}

/** One clone is bigger than any host could ever hold, busy or not. */
export class SlotTooLargeError extends ClusterError {
  override name = 'SlotTooLargeError';
  readonly code = 'slot-too-large';
}

/** Nothing at all could be granted now: every host is full (or there are none). */
export class NoCapacityError extends ClusterError {
  override name = 'NoCapacityError';
  readonly code = 'no-capacity';
}

export class UnknownTicketError extends ClusterError {
  override name = 'UnknownTicketError';
  readonly code = 'unknown-ticket';
  constructor(readonly ticketId: string) {
    super(`no such ticket: ${ticketId}`);
  }
}

/** The ticket was not used in time and its slots went back to the cluster. */
export class TicketExpiredError extends ClusterError {
  override name = 'TicketExpiredError';
  readonly code = 'ticket-expired';
  constructor(readonly ticketId: string) {
    super(`ticket ${ticketId} expired before it was used; request a new one`);
  }
}

export class TicketReleasedError extends ClusterError {
  override name = 'TicketReleasedError';
  readonly code = 'ticket-released';
  constructor(readonly ticketId: string, readonly reason: Exclude<EndReason, 'expired'>) {
    super(`ticket ${ticketId} was already released (${reason})`);
  }
}

/** A ticket clones once: a second sf_clone with it needs a new ticket. */
export class TicketInUseError extends ClusterError {
  override name = 'TicketInUseError';
  readonly code = 'ticket-in-use';
  constructor(readonly ticketId: string) {
    super(`ticket ${ticketId} is already in use`);
  }
}

/** Deliberately says nothing about the owner: families do not learn about each other. */
export class WrongFamilyError extends ClusterError {
  override name = 'WrongFamilyError';
  readonly code = 'wrong-family';
  constructor(readonly ticketId: string, readonly family: string) {
    super(`ticket ${ticketId} was not granted to family ${family}`);
  }
}

/** The manager was closed (its owner is shutting down); it grants nothing more. */
export class ManagerClosedError extends ClusterError {
  override name = 'ManagerClosedError';
  readonly code = 'manager-closed';
  constructor() {
    super('the cluster manager is closed');
  }
}

/** The batch system behind the manager failed in a way that is not one of the refusals above. */
export class BackendError extends ClusterError {
  override name = 'BackendError';
  readonly code = 'backend-failed';
}
