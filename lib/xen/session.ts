// A XenControl and a XenStore opened together and always closed together.
import { openXen } from './control.js';
import { loadAddon, type XenControl, type XenStore } from './native.js';

export async function withXenSession<T>(fn: (xc: XenControl, xs: XenStore) => Promise<T> | T): Promise<T> {
  const xc = openXen();
  let xs: XenStore | undefined;
  try {
    xs = new (loadAddon().XenStore)();
    return await fn(xc, xs);
  } finally {
    xs?.close();
    xc.close();
  }
}
