// Per-fork TLS pre-shared keys as QEMU's tls-creds-psk reads them: a directory holding
// `keys.psk`, one `identity:hex key` line. The directory is 0700 and the file 0600, created
// fresh (never through a symbolic link), so only root reads a fork's key.
import { randomBytes } from 'node:crypto';
import { constants, mkdirSync, openSync, readFileSync, writeSync, closeSync, rmSync, lstatSync } from 'node:fs';
import { join } from 'node:path';

export interface Psk {
  /** the PSK identity (sent in clear in the TLS handshake): `snowflock-<fork>` */
  identity: string;
  /** 32 random bytes, hex */
  key: string;
}

/** The identity of a fork's key: a key names its fork, so a clone cannot use one fork's key for another's slices. */
export function pskIdentity(fork: string): string {
  return `snowflock-${fork}`;
}

export function newPsk(fork: string): Psk {
  return { identity: pskIdentity(fork), key: randomBytes(32).toString('hex') };
}

/** The key a front or a clone keeps in `dir/keys.psk` (for relaunching a front with its fork's key). */
export function readPskDir(dir: string): Psk {
  const line = readFileSync(join(dir, 'keys.psk'), 'utf8').trim();
  const at = line.lastIndexOf(':');
  const p = { identity: line.slice(0, at), key: line.slice(at + 1) };
  checkPsk(p);
  return p;
}

export function checkPsk(p: Psk): void {
  if (!/^[\w.-]{1,128}$/.test(p.identity)) throw new Error(`PSK identity "${p.identity}" must be 1..128 of [A-Za-z0-9_.-]`);
  if (!/^[0-9a-f]{64}$/.test(p.key)) throw new Error('PSK key must be 64 lowercase hex characters');
}

/** A private directory for key directories (0700); refuses a symbolic link in its place. */
export function privateDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if ((st.mode & 0o077) !== 0) throw new Error(`${dir} is readable by others (mode ${(st.mode & 0o777).toString(8)}); refusing to keep keys in it`);
  return dir;
}

/**
 * RFC 7919's ffdhe2048 group, public. A server's tls-creds-psk without a dh-params.pem makes
 * QEMU generate fresh 2048-bit DH parameters at object-add: 0.7 to 3.5 s on a real CPU, over
 * the 30 s QMP timeout in the emulated test box. The handshake is TLS 1.3 with ECDHE anyway.
 */
const FFDHE2048_PEM = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`;

/**
 * Makes `dir` (must not exist) with keys.psk holding `p`, and for a server the standard DH
 * group QEMU would otherwise generate; returns the directory.
 */
export function writePskDir(dir: string, p: Psk, o: { server?: boolean } = {}): string {
  checkPsk(p);
  mkdirSync(dir, { mode: 0o700 });
  try {
    writeNewFile(join(dir, 'keys.psk'), `${p.identity}:${p.key}\n`);
    if (o.server) writeNewFile(join(dir, 'dh-params.pem'), FFDHE2048_PEM);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return dir;
}

/** A new 0600 file (never through a symbolic link, never over an existing file). */
function writeNewFile(path: string, text: string): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export function removePskDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
