// What clones are called in xl list.

/** "<parent>-<family>-<vmid>", the parent's part shortened so that it stays a valid domain name (64). */
export function cloneName(parentName: string, family: string, vmid: number): string {
  const suffix = `-${family}-${vmid}`;
  return `${parentName.slice(0, 64 - suffix.length)}${suffix}`;
}
