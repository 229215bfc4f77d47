// Disk errors with a stable code each, so the host daemon and scripts act on the code and a
// user reads what went wrong: QEMU's own words are kept, with the thing they are about.
import { QmpError } from './qmp.js';

export type DiskErrorCode =
  /** the slice server has no export of that name (QEMU refused the name) */
  | 'unknown-export'
  /** the slice server refused this key in the TLS handshake: a wrong PSK, or a client of another fork */
  | 'wrong-psk'
  /** the slice server could not be reached */
  | 'unreachable'
  /** the filesystem holding overlays is full (ENOSPC from QEMU or qemu-img) */
  | 'no-space'
  /** qemu-img check, or QEMU itself, found an overlay's metadata damaged */
  | 'corrupt-overlay'
  /** qemu-storage-daemon or qemu-img is missing, or the daemon would not start */
  | 'no-storage-daemon'
  /** a family, VM, disk or fork this host does not have */
  | 'not-found'
  /** a name already taken (a VM's disk, a fork already frozen or exported) */
  | 'exists'
  /** still needed: a fork of this disk is exported */
  | 'in-use'
  | 'bad-name'
  /** a fork's front could not listen on its address (the port taken, or not an address of this host) */
  | 'cannot-listen'
  /** any other refusal by QEMU; the message carries QEMU's class and description */
  | 'qemu';

export class DiskError extends Error {
  constructor(
    readonly code: DiskErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DiskError';
  }
}

/** QEMU's text of an error (a QMP description, or qemu-img's stderr). */
function qemuText(e: unknown): string {
  return e instanceof QmpError ? e.desc : e instanceof Error ? e.message : String(e);
}

/**
 * Gives a failure of QEMU its code: `what` says what was being done, e.g. "opening slice export
 * xvda of fork f1 at 10.0.0.1:10809"; QEMU's own message follows it.
 */
export function classify(e: unknown, what: string): DiskError {
  if (e instanceof DiskError) return e;
  const text = qemuText(e);
  const full = e instanceof Error ? e.message : text;
  const code: DiskErrorCode = /Requested export not available|export '.*' not present|unknown export/i.test(text)
    ? 'unknown-export'
    : /TLS handshake failed|TLS negotiation required|decryption failed|bad record mac/i.test(text)
      ? 'wrong-psk'
      : /No space left on device|ENOSPC/i.test(text)
        ? 'no-space'
        : /Connection refused|No route to host|Network is unreachable|timed out|Failed to connect/i.test(text)
          ? 'unreachable'
          : /corrupt|not in qcow2 format|Image is not in|bad magic|invalid L1|invalid L2|refcount/i.test(text)
            ? 'corrupt-overlay'
            : 'qemu';
  const why: Record<DiskErrorCode, string> = {
    'unknown-export': 'the slice server has no export of that name',
    'wrong-psk': "the slice server refused this key (a wrong PSK, or a client that is not of this fork)",
    unreachable: 'the slice server cannot be reached',
    'no-space': 'no space left for overlays',
    'corrupt-overlay': 'overlay metadata is damaged',
    'no-storage-daemon': 'qemu-storage-daemon unavailable',
    'not-found': 'not found',
    exists: 'already exists',
    'in-use': 'still in use',
    'bad-name': 'bad name',
    'cannot-listen': 'cannot listen on that address',
    qemu: 'QEMU refused',
  };
  return new DiskError(code, code === 'qemu' ? `${what}: ${full}` : `${what}: ${why[code]}: ${full}`, { cause: e });
}
