// The session key shared by a fork's memserver and its memtaps: 32 random bytes, stored as
// 64 hex characters in a file only root can read (never on a command line, where ps shows it).
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

export function readTokenFile(path: string): Buffer {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new Error(`cannot read token file ${path}: ${(e as Error).message}`);
  }
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new Error(`token file ${path} must hold 64 hex characters`);
  return Buffer.from(text, 'hex');
}

/** Writes a key file (a new random key unless one is given); returns the key as hex. */
export function writeTokenFile(path: string, token = randomBytes(32).toString('hex')): string {
  writeFileSync(path, token, { mode: 0o600 });
  return token;
}
