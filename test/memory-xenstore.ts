// xenstore as a map of paths, for tests of code that lays out entries (no xenstored needed).
import type { XenStore, XenStorePermission } from '../lib/xen/native.js';

/** xenstore as a map of paths; enough for the entry layout. */
export function memoryStore(): XenStore & { nodes: Map<string, string>; perms: Map<string, XenStorePermission[]> } {
  const nodes = new Map<string, string>();
  const perms = new Map<string, XenStorePermission[]>();
  const ensure = (p: string) => {
    for (let i = p.indexOf('/', 1); i > 0; i = p.indexOf('/', i + 1)) if (!nodes.has(p.slice(0, i))) nodes.set(p.slice(0, i), '');
    if (!nodes.has(p)) nodes.set(p, '');
  };
  return {
    nodes, perms,
    close() {},
    read: (p) => nodes.get(p) ?? null,
    write: (p, v) => { ensure(p); nodes.set(p, v); },
    mkdir: ensure,
    rm: (p) => { for (const k of [...nodes.keys()]) if (k === p || k.startsWith(`${p}/`)) nodes.delete(k); },
    directory: (p) => (nodes.has(p) ? [...nodes.keys()].filter((k) => k.startsWith(`${p}/`) && !k.slice(p.length + 1).includes('/')).map((k) => k.slice(p.length + 1)) : null),
    setPermissions: (p, v) => { perms.set(p, v); },
    introduceDomain() {},
    releaseDomain() {},
    resumeDomain() {},
  };
}
