/**
 * The messages of the three links, each as a checker (validation) and an inferred type:
 *   guest -> host daemon   (guestRequests)   what a program in a VM may ask
 *   host daemon -> master  (daemonRequests)  the same, plus who asked (the domid) and registration
 *   master -> host daemon  (hostCommands)    drive the CloneBackend of that host
 * Every reply is { v, id, type: "ok", result } or { v, id, type: "error", error: { code, message, field? } }.
 */
import { bool, int, jsonObject, list, num, obj, optional, str, type Infer } from './schema.js';

/** Largest clone count in one ticket, and the largest vmid. */
export const MAX_CLONES = 1024;
/** The fork image a parent's host hands to the clones' hosts is opaque to the daemons (but its sealed* secrets: image-secrets.ts), and bounded. */
export const MAX_IMAGE_BYTES = 16 * 1024;

export const ticketId = str(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, 'a ticket id (1-64 of A-Z a-z 0-9 . _ : -)');
export const requestId = str(/^[A-Za-z0-9_-]{8,64}$/, '8-64 characters of A-Z a-z 0-9 _ -');
/** Xen's ordinary domain ids stop below DOMID_FIRST_RESERVED (0x7ff0). */
export const domid = int(0, 0x7fef);
export const hostName = str(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a host name (1-63 of A-Z a-z 0-9 . _ -)');
export const familyId = str(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, 'a family id');
const vmid = int(1, MAX_CLONES);
const hex32 = str(/^[0-9a-f]{64}$/, '64 lower-case hex digits');

export const guestRequests = {
  /** n is checked by the master (positive integer), so every refusal of n has one code. */
  request_ticket: obj({ n: num, hierarchical: optional(bool) }),
  /** requestId makes a resent clone (after the channel dropped across the fork) the same call. */
  clone: obj({ ticket: ticketId, requestId }),
  exit: obj({}),
  join: obj({ ticket: ticketId }),
  kill: obj({ ticket: ticketId }),
  status: obj({}),
  hosts: obj({}),
  list: obj({}),
  /** A clone that has moved off the parent's address: its host daemon puts its vifs on the bridge. */
  network_ready: obj({}),
};

export const daemonRequests = {
  /** First call after the handshake: the host's size and the clones it already holds. */
  register: obj({
    vcpus: int(1, 1 << 16),
    memoryMiB: int(1, 2 ** 40),
    clones: list(obj({ domid, fork: ticketId, vmid }), 4096),
  }),
  request_ticket: obj({ domid, n: num, hierarchical: optional(bool), vcpus: int(1, 1 << 16), memoryMiB: int(1, 2 ** 40) }),
  clone: obj({ domid, ticket: ticketId, requestId }),
  exit: obj({ domid }),
  join: obj({ domid, ticket: ticketId }),
  kill: obj({ domid, ticket: ticketId }),
  status: obj({ domid }),
  hosts: obj({ domid: optional(domid) }),
  /** Without a domid: every family (a dom0 administrator); with one: that guest's family only. */
  list: obj({ domid: optional(domid) }),
  /** A clone of this host stopped running without sf_exit (crashed, powered off, vanished). */
  clone_ended: obj({ domid, reason: str(/^[a-z_]{1,32}$/, 'a reason of 1-32 of a-z _') }),
};

export const forkInfo = obj({ fork: ticketId, family: familyId, clones: int(1, MAX_CLONES) });

export const hostCommands = {
  ping: obj({}),
  capture: obj({ fork: forkInfo, parent: domid }),
  build: obj({ fork: forkInfo, image: jsonObject(MAX_IMAGE_BYTES), vmids: list(vmid, MAX_CLONES) }),
  start: obj({ domids: list(domid, MAX_CLONES) }),
  release: obj({ fork: forkInfo, parent: domid }),
  destroy: obj({ domids: list(domid, MAX_CLONES) }),
  /** The fork failed: destroy its clones here, now or when their build ends; release its parent if stopped here. */
  abort: obj({ fork: ticketId }),
  /** The fork ended with every clone destroyed: what its capture left here (memserver, disk fronts and slices) goes. */
  end: obj({ fork: ticketId }),
};

const destroyResult = obj({
  destroyed: list(domid, MAX_CLONES),
  failed: list(obj({ domid, message: str(/^[\s\S]{0,1000}$/, 'a message of at most 1000 characters') }), MAX_CLONES),
});

/** What a host daemon answers: the master checks these too, a host's bug must not corrupt its books. */
export const hostResults = {
  ping: obj({}),
  capture: obj({ image: jsonObject(MAX_IMAGE_BYTES) }),
  build: obj({ clones: list(obj({ vmid, domid }), MAX_CLONES) }),
  start: obj({}),
  release: obj({}),
  destroy: destroyResult,
  abort: destroyResult,
  end: obj({}),
};

/** dom0's CLI -> its host daemon, over the daemon's local admin socket (admin-socket.ts). */
export const adminRequests = {
  status: obj({}),
  hosts: obj({}),
  families: obj({}),
};

/**
 * TCP guest channels only, first message: the domid the guest says it is. Trusted only by a
 * transport told to (tests, a single-tenant host); vchan knows the domid without asking.
 */
export const guestIdentify = { identify: obj({ domid }) };

/** The key handshake between daemons (auth.ts); id 0, before any request. */
export const handshake = {
  /**
   * link: how frames after welcome are sealed (link-cipher.ts); identity: the key the host proves
   * (host-key.ts). Daemons from before sealing or before host keys send neither or no identity.
   */
  hello: obj({
    role: str(/^host$/, '"host"'), host: hostName, nonce: hex32,
    link: str(/^aes-256-gcm-v1$/, '"aes-256-gcm-v1" (this master seals every frame after the handshake; upgrade the host daemon)'),
    identity: str(/^host-key-v1$/, '"host-key-v1" (this master knows each host by a key of its own; upgrade the host daemon)'),
  }),
  challenge: obj({ nonce: hex32, proof: hex32 }),
  auth: obj({ proof: hex32 }),
  welcome: obj({}),
};

type InferTable<T> = { [K in keyof T]: Infer<T[K]> };
export type GuestRequests = InferTable<typeof guestRequests>;
export type DaemonRequests = InferTable<typeof daemonRequests>;
export type HostCommands = InferTable<typeof hostCommands>;
export type HostResults = InferTable<typeof hostResults>;
export type ForkInfo = Infer<typeof forkInfo>;

export interface TicketInfo {
  ticket: string;
  requested: number;
  /** m: how many clones sf_clone will make (m <= n). */
  granted: number;
  hierarchical: boolean;
  /** Milliseconds since the epoch; the ticket is refused after this unless used. */
  expiresAt: number | null;
  hosts: string[];
}

export interface CloneResult {
  /** 0 in the parent, 1..clones in the children. */
  vmid: number;
  clones: number;
  hierarchical: boolean;
  /** vCPUs of this VM's slot (the parent's own count in the parent). */
  vcpus: number;
}

export interface ChildReport {
  vmid: number;
  host: string;
}

/** What sf_join and sf_kill report once the family's clones of one ticket are gone. */
export interface EndReport {
  ticket: string;
  outcome: 'joined' | 'killed';
  clones: number;
  /** Destruction confirmed by their host. */
  destroyed: number[];
  /** Their host dropped its connection: their state is unknown; they are destroyed when it comes back. */
  lost: ChildReport[];
  /** Their host was connected but did not confirm destruction in time (or failed). */
  unconfirmed: (ChildReport & { reason: string })[];
  /** They stopped running without sf_exit (their host saw the domain crash, power off or vanish). */
  died: (ChildReport & { reason: string })[];
}

export type Role = 'parent' | 'child' | 'none';

export interface StatusResult {
  host: string;
  domid: number;
  role: Role;
  family: string | null;
  vmid: number | null;
  ticket: string | null;
}

export interface HostView {
  name: string;
  connected: boolean;
  vcpus: number;
  memoryMiB: number;
  usedVcpus?: number;
  usedMemoryMiB?: number;
}

export type ChildState = 'building' | 'running' | 'exited' | 'died' | 'lost' | 'destroyed';

export interface FamilyView {
  family: string;
  parent: { host: string; domid: number };
  tickets: { ticket: string; granted: number; state: 'granted' | 'forking' | 'running' | 'ending' }[];
  children: { ticket: string; vmid: number; host: string; domid: number | null; state: ChildState }[];
}

export interface GuestResults {
  request_ticket: TicketInfo;
  clone: CloneResult;
  exit: { vmid: number };
  join: EndReport;
  kill: EndReport;
  status: StatusResult;
  hosts: { hosts: HostView[] };
  list: { families: FamilyView[]; truncated: boolean };
  /** The vifs put on their bridges (none for a VM whose network was not held). */
  network_ready: { released: string[] };
}

export interface AdminResults {
  status: {
    host: string;
    master: { address: string; connected: boolean };
    /** The clones this host holds: by domid, with their fork and vmid. */
    clones: { domid: number; fork: string; vmid: number }[];
    startedAt: number;
  };
  hosts: GuestResults['hosts'];
  /** Every family (the master's whole view). */
  families: GuestResults['list'];
}

export type DaemonResults = GuestResults & {
  /** Domains the host must destroy: clones the master does not count as live (lost, or from before a restart). */
  register: { destroy: number[] };
  clone_ended: Record<string, never>;
};
