/**
 * Secrets that ride inside fork images (the memserver's key) cross the daemons' link, which is
 * sealed per session (link-cipher.ts) but ends in the master, and images may be kept. They are
 * sealed with AES-256-GCM under a key derived from one key, and bound to their fork: a host
 * seals with its own host key (host-key.ts), the master opens that and seals again with the
 * cluster key while it holds the image, then for each clone host with that host's key
 * (image-secrets.ts). A host learns only the secrets of forks it takes part in, and a sealed
 * secret moved into another fork's image does not open.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

const INFO = 'snowflock fork-image secret v1';

export class SealError extends Error {}

function sealingKey(key: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), INFO, 32));
}

/** "v1.<nonce>.<ciphertext>.<tag>", base64url parts. */
export function seal(key: Buffer, secret: Buffer, boundTo: string): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(key), nonce);
  cipher.setAAD(Buffer.from(boundTo, 'utf8'));
  const body = Buffer.concat([cipher.update(secret), cipher.final()]);
  return ['v1', ...[nonce, body, cipher.getAuthTag()].map((b) => b.toString('base64url'))].join('.');
}

export function unseal(key: Buffer, sealed: string, boundTo: string): Buffer {
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== 'v1') throw new SealError('not a sealed secret (expected v1.<nonce>.<ciphertext>.<tag>)');
  const [nonce, body, tag] = parts.slice(1).map((p) => Buffer.from(p, 'base64url'));
  if (nonce!.length !== 12 || tag!.length !== 16) throw new SealError('sealed secret has a bad nonce or tag length');
  const decipher = createDecipheriv('aes-256-gcm', sealingKey(key), nonce!);
  decipher.setAAD(Buffer.from(boundTo, 'utf8'));
  decipher.setAuthTag(tag!);
  try {
    return Buffer.concat([decipher.update(body!), decipher.final()]);
  } catch {
    throw new SealError('sealed secret does not open: another key (cluster or host), another fork, or altered on the way');
  }
}
