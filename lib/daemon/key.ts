/**
 * The cluster key every daemon shares: 32 random bytes stored as 64 hex digits in a file only
 * the daemon's user may read. A key readable by others is refused rather than used: anyone who
 * reads it can pose as a host and ask the master to destroy clones.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';

export const KEY_BYTES = 32;

export function readKeyFile(path: string): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new Error(`cannot read cluster key file ${path}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new Error(`cluster key file ${path} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new Error(`cluster key file ${path} is accessible to group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${path}`);
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new Error(`cluster key file ${path} belongs to uid ${st.uid}, not to this daemon's uid ${uid}`);
  const text = readFileSync(path, 'utf8').trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new Error(`cluster key file ${path} must hold ${KEY_BYTES * 2} hex digits`);
  return Buffer.from(text, 'hex');
}

/** Creates a new key file (mode 600); refuses to overwrite an existing one. */
export function writeKeyFile(path: string): Buffer {
  const key = randomBytes(KEY_BYTES);
  writeFileSync(path, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  return key;
}
