/**
 * libxenvchan through ffi-rs, loaded on first use: importing the guest library must work on a
 * machine without Xen or ffi-rs (TCP channel, tests); only opening a vchan needs them.
 *
 * ABI notes (x86-64 and arm64): NULL (the xentoollog logger) is passed as a 64-bit integer 0;
 * size_t as U64; `struct libxenvchan *` comes back as an External. libxenvchan's `blocking` flag
 * is left uninitialised by both init calls and is a bitfield ffi cannot set, so the callers here
 * never depend on it: they read only what data_ready reports, write only what buffer_space
 * allows, and block only in poll() on the event channel's fd, on a worker thread.
 */
import { createRequire } from 'node:module';

/** The parts of ffi-rs used here (declared locally so the project compiles without the package). */
interface FfiRs {
  open(p: { library: string; path: string }): void;
  load(p: { library: string; funcName: string; retType: unknown; paramsType: unknown[]; paramsValue: unknown[]; runInNewThread?: boolean }): unknown;
  isNullPointer(p: unknown): boolean;
  DataType: { I32: number; I64: number; U64: number; U8Array: number; String: number; External: number; Void: number };
}

/** An opaque `struct libxenvchan *`. */
export type VchanHandle = { readonly __vchan: unique symbol };

export interface VchanLib {
  clientInit(domid: number, xsPath: string): VchanHandle | null;
  serverInit(domid: number, xsPath: string, readMin: number, writeMin: number): VchanHandle | null;
  read(h: VchanHandle, buf: Buffer): number;
  write(h: VchanHandle, buf: Buffer): number;
  dataReady(h: VchanHandle): number;
  bufferSpace(h: VchanHandle): number;
  /** Consumes the pending event; call only after poll() said the fd is readable. */
  wait(h: VchanHandle): number;
  fd(h: VchanHandle): number;
  /** 0: the other side closed, 1: both open, 2: (server) no client yet. */
  isOpen(h: VchanHandle): number;
  close(h: VchanHandle): void;
  /** poll() for readability on a worker thread: > 0 readable, 0 timed out, < 0 error. */
  pollReadable(fd: number, timeoutMs: number): Promise<number>;
}

let cached: VchanLib | null = null;

export function loadVchanLib(): VchanLib {
  if (cached) return cached;
  let ffi: FfiRs;
  try {
    ffi = createRequire(import.meta.url)('ffi-rs') as FfiRs;
  } catch (e) {
    throw new Error('the vchan channel needs the npm package ffi-rs, which is not installed (add "ffi-rs" to the dependencies); '
      + `or use a TCP channel: SNOWFLOCK_CHANNEL=tcp://HOST:PORT. (${(e as Error).message})`);
  }
  openFirst(ffi, 'libxenvchan', ['libxenvchan.so.4.17', 'libxenvchan.so'], 'Debian package libxenmisc4.17');
  openFirst(ffi, 'libc', ['libc.so.6'], 'the C library');
  const T = ffi.DataType;
  const call = (library: string, funcName: string, retType: number, paramsType: number[], paramsValue: unknown[]) =>
    ffi.load({ library, funcName, retType, paramsType, paramsValue });
  const v = (fn: string, ret: number, types: number[], values: unknown[]) => call('libxenvchan', `libxenvchan_${fn}`, ret, types, values);
  const handle = (p: unknown): VchanHandle | null => (ffi.isNullPointer(p) ? null : (p as VchanHandle));
  cached = {
    clientInit: (domid, xsPath) => handle(v('client_init', T.External, [T.I64, T.I32, T.String], [0, domid, xsPath])),
    serverInit: (domid, xsPath, readMin, writeMin) =>
      handle(v('server_init', T.External, [T.I64, T.I32, T.String, T.U64, T.U64], [0, domid, xsPath, readMin, writeMin])),
    read: (h, buf) => v('read', T.I32, [T.External, T.U8Array, T.U64], [h, buf, buf.length]) as number,
    write: (h, buf) => v('write', T.I32, [T.External, T.U8Array, T.U64], [h, buf, buf.length]) as number,
    dataReady: (h) => v('data_ready', T.I32, [T.External], [h]) as number,
    bufferSpace: (h) => v('buffer_space', T.I32, [T.External], [h]) as number,
    wait: (h) => v('wait', T.I32, [T.External], [h]) as number,
    fd: (h) => v('fd_for_select', T.I32, [T.External], [h]) as number,
    isOpen: (h) => v('is_open', T.I32, [T.External], [h]) as number,
    close: (h) => void v('close', T.Void, [T.External], [h]),
    pollReadable: async (fd, timeoutMs) => {
      // struct pollfd { int fd; short events = POLLIN; short revents; }
      const pfd = Buffer.alloc(8);
      pfd.writeInt32LE(fd, 0);
      pfd.writeInt16LE(1, 4);
      const ready = (await ffi.load({
        library: 'libc', funcName: 'poll', retType: T.I32, paramsType: [T.U8Array, T.U64, T.I32], paramsValue: [pfd, 1, timeoutMs], runInNewThread: true,
      })) as number;
      // ffi-rs holds only the raw pointer while poll() runs on its worker thread: without this
      // use after the await, a GC could free pfd and poll() would write revents into a freed
      // malloc chunk (seen as "malloc(): unsorted double linked list corrupted").
      keepAlive(pfd);
      return ready;
    },
  };
  return cached;
}

/** Reads one byte, so the engine must keep `buf` reachable until this point. */
let keepAliveSink = 0;
function keepAlive(buf: Buffer): void {
  keepAliveSink ^= buf[0] ?? 0;
}

function openFirst(ffi: FfiRs, library: string, paths: string[], from: string): void {
  const errors: string[] = [];
  for (const path of paths) {
    try {
      ffi.open({ library, path });
      return;
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message}`);
    }
  }
  throw new Error(`cannot load ${library} (${from}): ${errors.join('; ')}`);
}
