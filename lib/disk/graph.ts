// The QMP steps that build a family's block graph, each recording its undo: image and overlay
// nodes, NBD client nodes, TLS-PSK credential objects, NBD exports.
import { statSync } from 'node:fs';
import { classify } from './errors.js';
import type { QmpClient } from './qmp.js';
import type { Base } from './record.js';
import type { Undo } from './undo.js';

/** The file node and format node of an image or overlay; `backing` null opens it without one. */
export async function addFormatNode(
  qmp: QmpClient,
  undo: Undo,
  o: { node: string; fileNode: string; filename: string; driver: 'raw' | 'qcow2'; backing?: string | null; readOnly?: boolean },
): Promise<void> {
  const discard = { discard: 'unmap' };
  await qmp.execute('blockdev-add', { driver: protocolDriver(o.filename), 'node-name': o.fileNode, filename: o.filename, ...discard, ...(o.readOnly ? { 'read-only': true } : {}) });
  undo.push(`blockdev-del ${o.fileNode}`, () => qmp.execute('blockdev-del', { 'node-name': o.fileNode }).then(() => undefined));
  await qmp.execute('blockdev-add', {
    driver: o.driver,
    'node-name': o.node,
    file: o.fileNode,
    ...discard,
    ...(o.backing !== undefined ? { backing: o.backing } : {}),
    ...(o.readOnly ? { 'read-only': true } : {}),
  });
  undo.push(`blockdev-del ${o.node}`, () => qmp.execute('blockdev-del', { 'node-name': o.node }).then(() => undefined));
}

/** QEMU's protocol driver for a path: `host_device` for a block device (the `file` driver refuses one), else `file`. */
export function protocolDriver(filename: string): 'file' | 'host_device' {
  try {
    return statSync(filename).isBlockDevice() ? 'host_device' : 'file';
  } catch {
    return 'file';
  }
}

export type NbdServer = { type: 'inet'; host: string; port: number } | { type: 'unix'; path: string };

/**
 * Seconds an NBD client node's requests wait for its server to come back after the connection
 * breaks (a family daemon or a front relaunched) instead of failing at once. The first connect
 * still fails at once (a wrong key or name is refused when the node is added).
 */
export const NBD_RECONNECT_DELAY_S = 15;

/** A read-only NBD client node (to a fork's front, or a front to its family's unix socket). */
export async function addNbdNode(qmp: QmpClient, undo: Undo, o: { node: string; server: NbdServer; export: string; tlsCreds?: string }): Promise<void> {
  const server = o.server.type === 'inet' ? { type: 'inet', host: o.server.host, port: String(o.server.port) } : { type: 'unix', path: o.server.path };
  await qmp.execute('blockdev-add', {
    driver: 'nbd', 'node-name': o.node, server, export: o.export, 'read-only': true, 'reconnect-delay': NBD_RECONNECT_DELAY_S,
    ...(o.tlsCreds ? { 'tls-creds': o.tlsCreds } : {}),
  });
  undo.push(`blockdev-del ${o.node}`, () => qmp.execute('blockdev-del', { 'node-name': o.node }).then(() => undefined));
}

/**
 * A clone's base: the fork's export read at its front over TLS (the base's key object), or, for a
 * base with a `socket`, at a local NBD server of this host (an mcdist backing) without TLS.
 */
export async function addForkNode(qmp: QmpClient, undo: Undo, b: Extract<Base, { kind: 'nbd' }>): Promise<void> {
  const where = b.socket ?? `${b.host}:${b.port}`;
  await addNbdNode(qmp, undo, b.socket
    ? { node: b.node, server: { type: 'unix', path: b.socket }, export: b.export }
    : { node: b.node, server: { type: 'inet', host: b.host, port: b.port }, export: b.export, tlsCreds: b.credsId }).catch((e) => {
    throw classify(e, `opening export ${b.export} of fork ${b.fork} at ${where}`);
  });
}

/** A tls-creds-psk object reading `dir/keys.psk`; a client names the identity it uses. */
export async function addPskCreds(qmp: QmpClient, undo: Undo, o: { id: string; endpoint: 'server' | 'client'; dir: string; identity?: string }): Promise<void> {
  await qmp.execute('object-add', { 'qom-type': 'tls-creds-psk', id: o.id, endpoint: o.endpoint, dir: o.dir, ...(o.identity ? { username: o.identity } : {}) });
  undo.push(`object-del ${o.id}`, () => qmp.execute('object-del', { id: o.id }).then(() => undefined));
}

/** An NBD export of a node on the daemon's NBD server. */
export async function addExport(qmp: QmpClient, undo: Undo, o: { id: string; node: string; name: string; writable: boolean }): Promise<void> {
  await qmp.execute('block-export-add', { type: 'nbd', id: o.id, 'node-name': o.node, name: o.name, writable: o.writable });
  undo.push(`block-export-del ${o.id}`, () => removeExport(qmp, o.id));
}

/** Removes an export at once (its clients are cut) and waits until QEMU has let go of it. */
export async function removeExport(qmp: QmpClient, id: string): Promise<void> {
  const since = qmp.eventMark();
  await qmp.execute('block-export-del', { id, mode: 'hard' });
  await qmp.waitEvent('BLOCK_EXPORT_DELETED', (d) => d.id === id, { since, timeoutMs: 10_000 });
}

interface GraphEdge {
  name: string;
  parent: number;
  child: number;
}

/** The node a node reads as its backing, from QEMU's own graph (for images whose header names one). */
export async function backingOf(qmp: QmpClient, node: string): Promise<string | null> {
  const g = await qmp.execute<{ nodes: { id: number; name: string }[]; edges: GraphEdge[] }>('x-debug-query-block-graph');
  const me = g.nodes.find((n) => n.name === node);
  const edge = me && g.edges.find((e) => e.parent === me.id && e.name === 'backing');
  return edge ? (g.nodes.find((n) => n.id === edge.child)?.name ?? null) : null;
}

/** Virtual size of a node. */
export async function nodeSize(qmp: QmpClient, node: string): Promise<number> {
  const nodes = await qmp.execute<{ 'node-name': string; image: { 'virtual-size': number } }[]>('query-named-block-nodes', { flat: true });
  const n = nodes.find((x) => x['node-name'] === node);
  if (!n) throw new Error(`no block node ${node}`);
  return n.image['virtual-size'];
}
