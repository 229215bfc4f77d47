/**
 * The network side of a fork family on one host, for the Xen backend: every clone's vifs get
 * MACs all of the family's hosts can compute, and with isolation on, the family's nftables
 * filter (lib/net/family-filter.ts) is installed when this host's clones are built and removed
 * when its last clone of the family goes.
 */
import { familyMac, vifName, type NicRecord } from '../xen/clone-nic.js';
import { applyFamilyFilter, removeFamilyFilter } from '../net/family-filter.js';
import type { ForkInfo } from './backend.js';

export class FamilyNetwork {
  /** parents captured on this host, by fork: their vifs belong to the family's ports here */
  private readonly parents = new Map<string, number>();

  constructor(private readonly isolate: boolean) {}

  parentCaptured(fork: string, parent: number): void {
    this.parents.set(fork, parent);
  }

  macsFor(fork: string, vmid: number, nics: NicRecord[]): string[] {
    return nics.map((n) => familyMac(fork, vmid, n.devid));
  }

  /** After this host built its clones (still paused): filter the family, when isolating. */
  async built(fork: ForkInfo, nics: NicRecord[], clones: { domid: number; vmid: number }[]): Promise<void> {
    if (!this.isolate || !nics.length) return;
    const vmids = Array.from({ length: fork.clones }, (_, i) => i + 1);
    const parent = this.parents.get(fork.fork);
    await applyFamilyFilter({
      family: fork.fork,
      parentMacs: nics.map((n) => n.mac),
      cloneMacs: vmids.flatMap((vmid) => this.macsFor(fork.fork, vmid, nics)),
      // each vif with the MAC macsFor gave it: the filter drops what it sends as anyone else
      cloneVifs: clones.flatMap((c) => nics.map((n) => ({ name: vifName(c.domid, n.devid), mac: familyMac(fork.fork, c.vmid, n.devid) }))),
      parentVifs: parent === undefined ? [] : nics.map((n) => vifName(parent, n.devid)),
    });
  }

  /**
   * This host holds no clone of the family any more. Never throws: it runs inside destroy and
   * its cleanup paths, and a filter nft could not remove was, as a rule, never installed.
   */
  async ended(fork: string): Promise<void> {
    this.parents.delete(fork);
    if (this.isolate) await removeFamilyFilter(fork).catch(() => undefined);
  }
}
