/**
 * A few value checkers for the wire protocol: each one validates an untrusted JSON value and
 * names the offending field, and its TypeScript type is inferred, so a message's type and its
 * validation are written once. No dependency: the guest library ships this too.
 */

/** A value that failed a check; `field` is a dotted path such as "vmids.3". */
export class SchemaError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

export interface Check<T> {
  (value: unknown, field: string): T;
  readonly optional?: boolean;
}

export type Infer<C> = C extends Check<infer T> ? T : never;
export type Spec = Record<string, Check<unknown>>;

type OptionalKeys<S extends Spec> = { [K in keyof S]: S[K] extends { optional: true } ? K : never }[keyof S];
type RequiredKeys<S extends Spec> = Exclude<keyof S, OptionalKeys<S>>;
export type InferSpec<S extends Spec> = { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> };

function show(value: unknown): string {
  const s = JSON.stringify(value);
  return s === undefined ? String(value) : s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

export function str(pattern: RegExp, what: string): Check<string> {
  return (v, field) => {
    if (typeof v !== 'string' || !pattern.test(v)) throw new SchemaError(field, `${field} must be ${what}, got ${show(v)}`);
    return v;
  };
}

export function int(min: number, max: number): Check<number> {
  return (v, field) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      throw new SchemaError(field, `${field} must be an integer from ${min} to ${max}, got ${show(v)}`);
    }
    return v;
  };
}

/** Any finite number: range rules that deserve their own error code are checked by the receiver. */
export const num: Check<number> = (v, field) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new SchemaError(field, `${field} must be a number, got ${show(v)}`);
  return v;
};

export const bool: Check<boolean> = (v, field) => {
  if (typeof v !== 'boolean') throw new SchemaError(field, `${field} must be true or false, got ${show(v)}`);
  return v;
};

export function optional<T>(check: Check<T>): Check<T | undefined> & { optional: true } {
  const c = (v: unknown, field: string) => (v === undefined ? undefined : check(v, field));
  return Object.assign(c, { optional: true as const });
}

export function list<T>(item: Check<T>, max: number): Check<T[]> {
  return (v, field) => {
    if (!Array.isArray(v)) throw new SchemaError(field, `${field} must be a list, got ${show(v)}`);
    if (v.length > max) throw new SchemaError(field, `${field} may hold at most ${max} items, got ${v.length}`);
    return v.map((x, i) => item(x, `${field}.${i}`));
  };
}

/** An object with exactly these keys (unknown keys are refused: a typo must not pass silently). */
export function obj<S extends Spec>(spec: S): Check<InferSpec<S>> {
  return (v, field) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError(field, `${field} must be an object, got ${show(v)}`);
    const out: Record<string, unknown> = {};
    const prefix = field === '' ? '' : `${field}.`;
    for (const key of Object.keys(v)) {
      if (!Object.hasOwn(spec, key)) throw new SchemaError(`${prefix}${key}`, `unexpected field ${prefix}${key}`);
    }
    for (const [key, check] of Object.entries(spec)) {
      const value = check((v as Record<string, unknown>)[key], `${prefix}${key}`);
      if (value !== undefined) out[key] = value;
    }
    return out as InferSpec<S>;
  };
}

/** Any JSON object no larger than maxBytes once serialised (opaque payloads such as a fork image). */
export function jsonObject(maxBytes: number): Check<Record<string, unknown>> {
  return (v, field) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError(field, `${field} must be an object, got ${show(v)}`);
    const bytes = Buffer.byteLength(JSON.stringify(v));
    if (bytes > maxBytes) throw new SchemaError(field, `${field} is ${bytes} bytes; at most ${maxBytes} are allowed`);
    return v as Record<string, unknown>;
  };
}
