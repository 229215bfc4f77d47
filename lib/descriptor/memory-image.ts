// The full memory image taken with a descriptor (the eager baseline): one 4 KiB header page,
// then every populated page in memory-map order. The header ties it to its descriptor.
//   0 "SFLKMEM\0"  8 u32 version (1)  12 u32 0  16 u64 pages  24 16-byte image id
import { openSync, readSync, closeSync, fstatSync, fchmodSync, constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { DescriptorError } from './errors.js';

export const IMAGE_HEADER_SIZE = 4096;
const IMAGE_MAGIC = Buffer.from('SFLKMEM\0', 'latin1');

export function newImageId(): string {
  return randomBytes(16).toString('hex');
}

export function imageHeader(imageId: string, pages: number): Buffer {
  const h = Buffer.alloc(IMAGE_HEADER_SIZE);
  IMAGE_MAGIC.copy(h, 0);
  h.writeUInt32LE(1, 8);
  h.writeBigUInt64LE(BigInt(pages), 16);
  Buffer.from(imageId, 'hex').copy(h, 24);
  return h;
}

/**
 * Checks that the image at path belongs to the descriptor (id and size: `pages` whole pages,
 * or for PV `bytes` of the stream's page data).
 */
export function checkImage(path: string, imageId: string | undefined, pages: number, bytes = pages * 4096): void {
  if (!imageId) throw new DescriptorError('this descriptor was saved without a memory image');
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new DescriptorError(`cannot open memory image ${path}: ${(e as Error).message}`);
  }
  try {
    const h = Buffer.alloc(IMAGE_HEADER_SIZE);
    const got = readSync(fd, h, 0, IMAGE_HEADER_SIZE, 0);
    if (got < 40 || !h.subarray(0, 8).equals(IMAGE_MAGIC)) throw new DescriptorError(`${path} is not a snowflock memory image`);
    if (h.subarray(24, 40).toString('hex') !== imageId) throw new DescriptorError(`${path} is the memory image of another descriptor`);
    const expected = IMAGE_HEADER_SIZE + bytes;
    const size = fstatSync(fd).size;
    if (size !== expected) throw new DescriptorError(`memory image ${path} is ${size} bytes, expected ${expected} (truncated?)`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens a memory image for writing: the guest's whole memory, so 0600 (also when an older file
 * is truncated: O_CREAT's mode applies only to a new file), and never through a symbolic link
 * planted at the path. Returns the file descriptor.
 */
export function openImageForWrite(path: string): number {
  const { O_WRONLY, O_CREAT, O_TRUNC, O_NOFOLLOW } = constants;
  let fd: number;
  try {
    fd = openSync(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new DescriptorError(`memory image ${path} is a symbolic link: not writing through it`);
    throw new DescriptorError(`cannot create memory image ${path}: ${(e as Error).message}`);
  }
  fchmodSync(fd, 0o600);
  return fd;
}
