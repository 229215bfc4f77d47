/**
 * Per-host identities. Each host daemon proves a key of its own, derived from the cluster key
 * and its name:
 *
 *   host key = HKDF-SHA256(ikm = cluster key, salt = none, info = "snowflock-v1 host key\0" | name)
 *
 * The master holds the cluster key and derives any host's key from the name in its hello; a
 * host holds only its own, so it can prove (and so register, and open links and fork secrets
 * for) no other name, and cannot learn the cluster key or another host's key from it.
 *
 * Host key file (`snowflock daemon keygen --host NAME --cluster-key K --key-file F`), mode 600,
 * one line: "snowflock-host-key v1 <name> <64 hex digits>". A host daemon also takes the cluster
 * key file (the format from before host keys) and derives its key from it; such a host is
 * trusted as any host, as every host was before.
 */
import { hkdfSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { hostName } from './messages.js';
import { KEY_BYTES, parseClusterKey, readPrivateFile } from './key.js';

const HEADER = 'snowflock-host-key v1';

export function deriveHostKey(clusterKey: Buffer, host: string): Buffer {
  if (clusterKey.length !== KEY_BYTES) throw new Error(`the cluster key must be ${KEY_BYTES} bytes`);
  return Buffer.from(hkdfSync('sha256', clusterKey, Buffer.alloc(0), `snowflock-v1 host key\0${host}`, KEY_BYTES));
}

/** What a host daemon proves: its name and its key. */
export interface HostCredential {
  host: string;
  key: Buffer;
  /** 'cluster': derived from the cluster key file (any name would have worked). */
  from: 'host-key' | 'cluster';
}

/** Writes NAME's host key file (mode 600); refuses to overwrite an existing one. */
export function writeHostKeyFile(path: string, clusterKey: Buffer, host: string): Buffer {
  hostName(host, 'host');
  const key = deriveHostKey(clusterKey, host);
  writeFileSync(path, `${HEADER} ${host} ${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  return key;
}

/**
 * The credential in a host daemon's --key-file: a host key file (its name must be `name`, when
 * given) or the cluster key file (then `name` is needed, and the key is derived for it).
 */
export function readHostCredential(path: string, name: string | undefined): HostCredential {
  const text = readPrivateFile(path, 'host key');
  const cluster = parseClusterKey(text);
  if (cluster) {
    if (name === undefined) throw new Error(`${path} is the cluster key: say which host this is with --name (or give this host its own key: snowflock daemon keygen --host NAME)`);
    hostName(name, '--name');
    return { host: name, key: deriveHostKey(cluster, name), from: 'cluster' };
  }
  const m = /^snowflock-host-key v1 (\S+) ([0-9a-fA-F]{64})$/.exec(text);
  if (!m) throw new Error(`host key file ${path} must hold "${HEADER} <name> <64 hex digits>" or a cluster key (64 hex digits)`);
  const host = m[1]!;
  hostName(host, `the name in ${path}`);
  if (name !== undefined && name !== host) throw new Error(`host key file ${path} is host ${host}'s, not ${name}'s: a host speaks only under the name of its key`);
  return { host, key: Buffer.from(m[2]!, 'hex'), from: 'host-key' };
}
