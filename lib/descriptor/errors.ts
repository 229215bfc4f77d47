/** A descriptor or memory image that cannot be used; the message names what is wrong. */
export class DescriptorError extends Error {
  override name = 'DescriptorError';
}
