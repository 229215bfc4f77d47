/**
 * A fork image is the backend's opaque JSON, except for one convention: a top-level string field
 * whose name starts with "sealed" is a secret sealed (seal.ts) to one key and bound to the fork.
 * The parent's host seals to its own host key; each clone host can open only what is sealed to
 * its own. The master, which alone can derive every host's key, re-seals at its links: what a
 * host captured is opened with that host's key and kept sealed to the cluster key, and what goes
 * to a host to build from is sealed to that host's key.
 */
import { SfError } from './errors.js';
import type { ForkImage } from './backend.js';
import { seal, unseal } from './seal.js';

const SEALED = /^sealed/;

/** The image with each sealed secret opened with `from` and sealed again with `to`. */
export function reseal(image: ForkImage, fork: string, from: Buffer, to: Buffer, whose: string): ForkImage {
  const out: ForkImage = { ...image };
  for (const [field, value] of Object.entries(image)) {
    if (!SEALED.test(field) || typeof value !== 'string') continue;
    let secret: Buffer;
    try {
      secret = unseal(from, value, fork);
    } catch (e) {
      throw new SfError('internal', `fork ${fork}: ${field} of ${whose} does not open: ${(e as Error).message}`);
    }
    out[field] = seal(to, secret, fork);
  }
  return out;
}
