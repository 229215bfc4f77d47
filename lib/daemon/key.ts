/**
 * The cluster key the master holds: 32 random bytes stored as 64 hex digits in a file only the
 * daemon's user may read. A key readable by others is refused rather than used: anyone who reads
 * it can pose as any host, or as the master, and ask for clones to be destroyed. Hosts should
 * hold their own host key instead (host-key.ts); a host given the cluster key still works.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';

export const KEY_BYTES = 32;

/** A key file's text, once it is a regular file of this daemon's user that nobody else can read. */
export function readPrivateFile(path: string, what: string): string {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new Error(`cannot read ${what} file ${path}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new Error(`${what} file ${path} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new Error(`${what} file ${path} is accessible to group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${path}`);
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new Error(`${what} file ${path} belongs to uid ${st.uid}, not to this daemon's uid ${uid}`);
  return readFileSync(path, 'utf8').trim();
}

/** The 32-byte key of 64 hex digits, or null when the text is something else. */
export function parseClusterKey(text: string): Buffer | null {
  return /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : null;
}

export function readKeyFile(path: string): Buffer {
  const text = readPrivateFile(path, 'cluster key');
  const key = parseClusterKey(text);
  if (key) return key;
  if (text.startsWith('snowflock-host-key ')) {
    throw new Error(`cluster key file ${path} holds a host key (snowflock daemon keygen --host); the master needs the cluster key itself`);
  }
  throw new Error(`cluster key file ${path} must hold ${KEY_BYTES * 2} hex digits`);
}

/** Creates a new key file (mode 600); refuses to overwrite an existing one. */
export function writeKeyFile(path: string): Buffer {
  const key = randomBytes(KEY_BYTES);
  writeFileSync(path, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  return key;
}
