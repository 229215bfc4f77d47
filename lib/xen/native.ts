// The whole native boundary, typed in one place. Everything the C++ addon exports is
// declared here; the rest of lib/ imports the addon only through this module.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type DomainType = 'pv' | 'pvh' | 'hvm';

export interface DomainInfo {
  domid: number;
  type: DomainType;
  /** xl's state column: r b p s c d */
  state: string;
  flags: number;
  dying: boolean;
  paused: boolean;
  running: boolean;
  blocked: boolean;
  hap: boolean;
  shutdownReason?: 'poweroff' | 'reboot' | 'suspend' | 'crash' | 'watchdog' | 'soft_reset' | 'unknown';
  totPages: number;
  maxPages: number;
  sharedPages: number;
  pagedPages: number;
  cpuTimeNs: number;
  onlineVcpus: number;
  maxVcpuId: number;
  uuid: string;
  emulationFlags: number;
}

export interface XenVersionInfo {
  major: number;
  minor: number;
  extra: string;
  capabilities: string;
  commandLine: string;
}

export interface PhysInfo {
  capabilities: { hvm: boolean; pv: boolean; hap: boolean; shadow: boolean; directio: boolean; gnttabV1: boolean; gnttabV2: boolean };
  nrCpus: number;
  threadsPerCore: number;
  coresPerSocket: number;
  nrNodes: number;
  cpuKhz: number;
  totalPages: number;
  freePages: number;
  scrubPages: number;
}

export interface FeatureResult {
  available: boolean;
  errno?: number;
  reason?: string;
  xenLog?: string;
}

export interface FeatureReport {
  hap: boolean;
  memPaging: FeatureResult;
  memSharing: FeatureResult;
  memAccess: FeatureResult;
}

export interface LibraryInfo {
  name: string;
  loaded: boolean;
  path?: string;
  error?: string;
}

export interface InterfaceProbe {
  name: 'xenctrl' | 'xenforeignmemory' | 'xenevtchn' | 'xengnttab' | 'xenstore';
  ok: boolean;
  error?: string;
}

/** [first gfn, count] */
export type GfnRange = [number, number];

export interface SpecialPage {
  /** the HVM param naming the page (1 store ring, 17 console ring, 12 ident page table, ...) */
  param: number;
  gfn: number;
  data: Buffer;
}

export interface TscInfo {
  mode: number;
  elapsedNsec: bigint;
  gtscKhz: number;
  incarnation: number;
}

/** What captureState reads from a paused HVM/PVH domain: everything but guest RAM. */
export interface DomainState {
  domain: DomainInfo;
  hvmContext: Buffer;
  params: [number, bigint][];
  /** xen_cpuid_leaf_t records, 24 bytes each */
  cpuid: Buffer;
  /** xen_msr_entry_t records, 16 bytes each */
  msrs: Buffer;
  tsc: TscInfo;
  pagingPoolBytes: number;
  maxGpfn: number;
  maxPages: number;
  maxVcpus: number;
  emulationFlags: number;
  hap: boolean;
  populated: GfnRange[];
  special: SpecialPage[];
}

export interface BuildSpec {
  /** the new domain's UUID, 16 bytes */
  handle: Buffer;
  hap: boolean;
  maxVcpus: number;
  emulationFlags: number;
  maxPages: number;
  pagingPoolBytes: number;
  tsc: TscInfo;
  cpuid: Buffer;
  msrs: Buffer;
  hvmContext: Buffer;
  params: [number, bigint][];
  populated: GfnRange[];
  special: SpecialPage[];
  /** full memory image whose pages follow `populated`, starting at imageOffset */
  memoryImage?: string;
  imageOffset?: number;
}

export interface BuildResult {
  domid: number;
  storePort: number;
  consolePort: number;
  storeGfn: number;
  consoleGfn: number;
  pages: number;
  /** populate calls Xen cut short, continued from where they stopped */
  partialPopulates: number;
}

export interface XenStorePermission {
  domid: number;
  read?: boolean;
  write?: boolean;
}

export interface XenStore {
  close(): void;
  /** null when the node does not exist */
  read(path: string): string | null;
  write(path: string, value: string): void;
  mkdir(path: string): void;
  rm(path: string): void;
  directory(path: string): string[] | null;
  /** the first entry is the owner; its flags apply to every domain not listed */
  setPermissions(path: string, perms: XenStorePermission[]): void;
  introduceDomain(domid: number, storeGfn: number, storePort: number): void;
  releaseDomain(domid: number): void;
  /** Tells xenstored a suspended domain runs again (XS_RESUME), as libxl does after a resume. */
  resumeDomain(domid: number): void;
}

export interface XenControl {
  close(): void;
  version(): XenVersionInfo;
  physinfo(): PhysInfo;
  listDomains(): DomainInfo[];
  domainInfo(domid: number): DomainInfo;
  pause(domid: number): void;
  unpause(domid: number): void;
  destroy(domid: number): Promise<void>;
  /** Creates and destroys a probe domain: trying is the only way to know. */
  probeFeatures(): Promise<FeatureReport>;
  /** fast=true cancels a cooperative suspend; fast=false runs the guest's full resume */
  resume(domid: number, fast: boolean): void;
  /** whether dom0 can map the page at gfn (false for a gfn with no page; a paged-out gfn is paged in) */
  gfnHasPage(domid: number, gfn: number): boolean;
  /** the domain must be paused or suspended */
  captureState(domid: number): Promise<DomainState>;
  /** writes `header` then every populated page in range order; resolves to the page count */
  writeMemoryImage(domid: number, populated: GfnRange[], path: string, header: Buffer): Promise<number>;
  /** builds a paused domain; a failure destroys what was built */
  buildDomain(spec: BuildSpec): Promise<BuildResult>;
  /** libxenguest's migration stream of a suspended, paused PV domain, written to path */
  savePvStream(domid: number, path: string): Promise<void>;
  /** a paused PV domain restored from head + image[imageOffset, +imageLength) + tail; a failure destroys it */
  restorePvStream(spec: PvRestoreSpec): Promise<BuildResult>;
}

export interface PvRestoreSpec {
  /** the clone's UUID, 16 bytes */
  handle: Buffer;
  maxVcpus: number;
  maxPages: number;
  head: Buffer;
  tail: Buffer;
  image: string;
  imageOffset: number;
  imageLength: number;
}

export interface MemtapOptions {
  domid: number;
  /** the memserver holding the parent's memory image */
  host: string;
  port: number;
  /** 32-byte session key the memserver was started with */
  token: Buffer;
  vmid: number;
  /** neighbour pages loaded with each fault (default 64, max 127) */
  prefetch?: number;
  /** per memserver request (default 5000) */
  timeoutMs?: number;
  /** replace the paging ring of a memtap that ended with a fresh one (the domain is paused meanwhile) */
  takeover?: boolean;
  /** paging (default): mem_paging, Xen with CONFIG_MEM_PAGING; access: mem_access, stock Xen on Intel EPT */
  backend?: MemtapBackend;
}

export type MemtapBackend = 'paging' | 'access';

export interface MemtapPrepareReport {
  /** Xen's end of the paging ring's event channel: what a successor needs to take over */
  xenPort: number;
  ringGfn: number;
  evicted: number;
  refused: number;
  eager: number;
  welcomeMs: number;
  eagerMs: number;
  evictMs: number;
}

export interface MemtapStats {
  running: boolean;
  requests: number;
  faults: number;
  prefetched: number;
  zeroFilled: number;
  duplicates: number;
  fetches: number;
  fetchedPages: number;
  fetchMs: number;
  handleMs: number;
  maxHandleMs: number;
  batches: number;
  freeMarked: number;
  outages: number;
  /** pages Xen refused to take (each reported by a load-failed event) */
  loadFailures: number;
  /** pages loaded by settle() rather than by the guest's faults */
  settleLoaded: number;
  settling: boolean;
  /** every page is in and memtap has left the clone */
  settled: boolean;
}

export interface MemtapEvent {
  type: 'memserver-lost' | 'memserver-back' | 'load-failed' | 'settled' | 'failed' | 'stopped';
  message?: string;
}

/** One clone's memory-on-demand engine (native/memtap.h). */
export interface Memtap {
  /** paged-out state for a fresh paused clone (or ring takeover); blocking work off-thread */
  prepare(): Promise<MemtapPrepareReport>;
  /** runs the fault loop on its own thread; `stopped` is the last event */
  start(onEvent: (e: MemtapEvent) => void): void;
  stop(): Promise<void>;
  /** pages the clone's kernel reported free at fork: zero-filled, never fetched; returns how many changed */
  markFree(ranges: GfnRange[]): number;
  /** neighbours loaded with each fault from now on (0..127) */
  setPrefetch(pages: number): void;
  /** loads every page the clone has not touched, then leaves it (a "settled" event ends the loop) */
  settle(): void;
  stats(): MemtapStats;
  /** tells the memserver this clone is finished */
  goodbye(): Promise<void>;
}

/**
 * One direction of the memserver's sealed frames (native/gcm_frames.h; layout in
 * lib/memtap/secure.ts): AES-256-GCM keyed once, the frame counter kept natively. Works without Xen.
 */
export interface FrameCipher {
  /** `frame` (u32 length + body) sealed into `out` (frame.length + 16 bytes; apart from frame, or in place) */
  seal(frame: Buffer, out: Buffer): void;
  /** `record` (after the length field) opened into `out` (≥ record.length − 16 bytes); false if it does not authenticate */
  open(record: Buffer, out: Buffer): boolean;
}

export interface Addon {
  builtWithXen: boolean;
  FrameCipher: new (key: Buffer, direction: 'seal' | 'open') => FrameCipher;
  /**
   * A listening TCP socket with TCP_NODELAY (inherited by the sockets it accepts), close-on-exec,
   * for a child to be given through spawn's stdio; port 0 takes a free one. Works without Xen.
   */
  listenTcp(host: string, port: number, backlog: number): { fd: number; port: number };
  Memtap: new (options: MemtapOptions) => Memtap;
  libraries(): LibraryInfo[];
  probeInterfaces(): InterfaceProbe[];
  XenControl: new () => XenControl;
  XenStore: new () => XenStore;
}

/** Error thrown by the addon for a failed Xen call. */
export interface NativeXenError extends Error {
  call: string;
  subject: string;
  errno: number;
  /** e.g. ESRCH; ENOXEN when Xen is not there at all */
  code: string;
  /** the last warning or error line Xen's own logger printed during the call */
  xenLog: string;
}

export function isNativeXenError(e: unknown): e is NativeXenError {
  return e instanceof Error && typeof (e as NativeXenError).call === 'string' && typeof (e as NativeXenError).errno === 'number';
}

function packageRoot(): string {
  // dist/lib/xen/native.js and lib/xen/native.ts both sit below the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('snowflock: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

let cached: Addon | undefined;

export function loadAddon(): Addon {
  if (cached) return cached;
  const root = packageRoot();
  const file = process.env.SNOWFLOCK_ADDON ?? join(root, 'build', 'Release', 'snowflock.node');
  if (!existsSync(file)) {
    throw new Error(`snowflock addon not built: ${file} is missing; run \`npm run build:native\` (needs g++ and python3)`);
  }
  cached = createRequire(import.meta.url)(file) as Addon;
  return cached;
}
