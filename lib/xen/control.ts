// Opening the hypervisor interface, with the reason spelled out when this is not a Xen dom0.
import { loadAddon, isNativeXenError, type XenControl } from './native.js';

export class XenUnavailableError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'XenUnavailableError';
  }
}

export function openXen(): XenControl {
  const addon = loadAddon();
  try {
    return new addon.XenControl();
  } catch (e) {
    if (isNativeXenError(e) && (e.code === 'ENOENT' || e.code === 'ENOXEN' || e.code === 'EACCES')) {
      const hint =
        e.code === 'EACCES'
          ? 'run as root'
          : e.code === 'ENOXEN'
            ? ''
            : 'this is not a Xen dom0 (no /dev/xen/privcmd); use `snowflock testbox` to run under Xen in QEMU';
      throw new XenUnavailableError(hint ? `${e.message}: ${hint}` : e.message, e);
    }
    throw e;
  }
}

/** Runs fn with an open handle and always closes it. */
export async function withXen<T>(fn: (xc: XenControl) => Promise<T> | T): Promise<T> {
  const xc = openXen();
  try {
    return await fn(xc);
  } finally {
    xc.close();
  }
}
