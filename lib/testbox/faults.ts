// Triple faults on a test box's console, the suite file that owned each faulting domain, and
// whether a failed run may be blamed on the emulated CPU (docs/ARCHITECTURE.md, test box notes).

/**
 * What Xen printed about one triple fault. hvm_triple_fault() (xen/arch/x86/hvm/hvm.c) prints
 * "dNvM Triple fault - invoking HVM shutdown action R" and then the vCPU's saved state, whose
 * "RIP: cs:[<rip>]" line tells the kinds apart:
 * - vmrun: Xen's own code segment (e008) and an address inside Xen in the *guest's* saved state.
 *   No guest can hold Xen's selector in its state, and no clone can inherit it (a clone's CPU
 *   state is its parent's saved guest state): the emulated VMRUN mixed Xen's state into the
 *   guest's, the emulator's doing whatever ran in the guest.
 * - guest: any other state; the guest's own code faulted, which wrong memory or a bad restored
 *   CPU state would cause as well as the emulator.
 * - unknown: no state followed (the log was cut).
 */
export type FaultKind = 'vmrun' | 'guest' | 'unknown';

export interface TripleFault {
  /** "d5v0" */
  vcpu: string;
  domid: number;
  kind: FaultKind;
  /** "0010:ffffffff8107ee05" when the dump was read */
  rip?: string;
}

/** Xen's own code segment selector (__HYPERVISOR_CS). */
const XEN_CS = 'e008';
/** The register dump follows the fault line within a few lines (xen/arch/x86/x86_64/traps.c). */
const DUMP_LINES = 12;

export interface FaultReader {
  faults: TripleFault[];
  /** the last fault, while its dump may still come */
  open?: { fault: TripleFault; linesLeft: number };
}

export function newFaultReader(): FaultReader {
  return { faults: [] };
}

// Xen may prefix a timestamp ("(XEN) [  12.345678] ...") when console_timestamps is set.
const XEN_LINE = /^\(XEN\) (?:\[[^\]]*\] )?(.*)$/;

/** Feeds one console line. */
export function readFaultLine(r: FaultReader, line: string): void {
  const xen = XEN_LINE.exec(line)?.[1];
  const fault = xen === undefined ? null : /^(d(\d+)v\d+) Triple fault/.exec(xen);
  if (fault) {
    const f: TripleFault = { vcpu: fault[1]!, domid: Number(fault[2]), kind: 'unknown' };
    r.faults.push(f);
    r.open = { fault: f, linesLeft: DUMP_LINES };
    return;
  }
  if (!r.open) return;
  // Xen holds its console lock for the dump, so no other line comes between; a RIP line much later is another dump's.
  const rip = xen === undefined ? null : /^RIP:\s+([0-9a-f]{4}):\[<([0-9a-f]+)>\]/.exec(xen);
  if (rip) {
    r.open.fault.kind = rip[1] === XEN_CS ? 'vmrun' : 'guest';
    r.open.fault.rip = `${rip[1]}:${rip[2]}`;
    r.open = undefined;
  } else if (--r.open.linesLeft <= 0) {
    r.open = undefined;
  }
}

/**
 * Who made a domain, as the suite says on dom0's console (test/testbox/helpers.ts):
 * "domain d7 built-by=xl file=70.memtap" for guests the suite started with xl create,
 * "domain d9 built-by=other file=70.memtap" for any other domain that appeared while that file
 * ran (clones, the feature probe's domain, an xl restore), and
 * "domain d7 dropped file=70.memtap why=died-booting" when the suite gave up on a guest and
 * started another in its place: its fault cannot explain a later failure.
 */
export interface DomainOwner {
  file: string;
  builtBy: 'xl' | 'other';
  dropped?: string;
}

export function domainMark(domid: number, o: { file: string; builtBy: 'xl' | 'other' } | { file: string; dropped: string }): string {
  return 'dropped' in o
    ? `SNOWFLOCK-MARK domain d${domid} dropped file=${o.file} why=${o.dropped}`
    : `SNOWFLOCK-MARK domain d${domid} built-by=${o.builtBy} file=${o.file}`;
}

/** Owners by domid, from one box's marks (the text after "SNOWFLOCK-MARK "). */
export function domainOwners(marks: string[]): Map<number, DomainOwner> {
  const owners = new Map<number, DomainOwner>();
  for (const m of marks) {
    const built = /^domain d(\d+) built-by=(xl|other) file=([\w.-]+)/.exec(m);
    if (built) owners.set(Number(built[1]), { file: built[3]!, builtBy: built[2] as 'xl' | 'other' });
    const dropped = /^domain d(\d+) dropped file=[\w.-]+ why=(\S+)/.exec(m);
    if (dropped) {
      const o = owners.get(Number(dropped[1]));
      if (o) o.dropped = dropped[2]!;
    }
  }
  return owners;
}
