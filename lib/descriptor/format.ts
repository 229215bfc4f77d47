// The VM descriptor file: a versioned, self-describing binary that carries what a clone
// needs to start on any host, without the guest's RAM.
//
//   header (32 bytes, little endian)
//     0  magic "SFLKDESC"      8  u16 version (1)     10 u16 header size (32)
//     12 u32 section count     16 u64 file length     24 u32 crc32 of bytes 0..24   28 u32 reserved
//   sections, each 8-byte aligned:
//     0  u32 type   4 u32 flags (0)   8 u64 payload length   16 u32 crc32 of payload   20 u32 reserved
//     24 payload, then zero padding to 8 bytes
//
// Section payloads: META is UTF-8 JSON (descriptorMeta below); the others are the raw Xen
// records, little endian, as documented next to each SectionType.
import type { NicRecord } from '../xen/clone-nic.js';
import type { VbdRecord } from '../xen/clone-vbd.js';
import { checkConfig, type LibxlConfig } from '../xen/libxl-config.js';
import { crc32 } from 'node:zlib';
import type { GfnRange, SpecialPage } from '../xen/native.js';
import { DescriptorError } from './errors.js';

export const MAGIC = Buffer.from('SFLKDESC', 'latin1');
export const FORMAT_VERSION = 1;
const HEADER_SIZE = 32;
const SECTION_HEADER_SIZE = 24;
const PAGE_SIZE = 4096;

export enum SectionType {
  Meta = 1,
  /** xc_domain_hvm_getcontext blob: every save record of every vCPU */
  HvmContext = 2,
  /** n × { u32 index, u32 0, u64 value } */
  HvmParams = 3,
  /** n × xen_cpuid_leaf_t (24 bytes) */
  Cpuid = 4,
  /** n × xen_msr_entry_t (16 bytes) */
  Msrs = 5,
  /** n × { u64 first gfn, u64 count }: the populated guest-physical ranges */
  MemoryMap = 6,
  /** n × { u32 param, u32 0, u64 gfn, 4096 bytes }: pages shared with the toolstack */
  SpecialPages = 7,
  /** PV only: u64 head length, then libxenguest's stream without its page data (pv-stream.ts) */
  PvStream = 8,
}

export interface DescriptorMeta {
  format: 'snowflock-descriptor';
  createdAt: string;
  source: { host: string; domid: number; name: string; uuid: string; type: 'pv' | 'pvh' | 'hvm' };
  vm: { maxVcpus: number; maxPages: number; hap: boolean; emulationFlags: number; maxGpfn: number; pagingPoolBytes: number };
  tsc: { mode: number; elapsedNsec: string; gtscKhz: number; incarnation: number };
  /**
   * pages in the memory map; imageId ties the descriptor to its memory image. PV: pages with
   * data in the stream, and imageBytes the length of the page data after the image header.
   */
  memory: {
    pages: number; imageId?: string; imageBytes?: number;
    /** the parent's xenstore memory/static-max and memory/target at the fork (absent in older descriptors) */
    staticMaxKiB?: number; targetKiB?: number;
  };
  /** xenstore devices the parent had, by class (vif, vbd, ...) */
  devices: Record<string, string[]>;
  /** the parent's bridged vifs, which every clone gets with a new MAC (absent in older descriptors) */
  nics?: NicRecord[];
  /** the parent's disk-family disks, which every clone gets as an overlay over the fork's slice */
  vbds?: VbdRecord[];
  xen: { version: string };
  /** the parent's configuration as libxl recorded it (absent when libxl did not build the parent) */
  libxl?: LibxlConfig;
  /** what the parent's kernel announced under control/ (feature-poweroff, ...: "0" or "1") */
  control?: Record<string, string>;
  /** parent's pause for capture, in ms (emulated hosts: ratios only) */
  pauseMs?: number;
}

export interface Descriptor {
  meta: DescriptorMeta;
  hvmContext: Buffer;
  params: [number, bigint][];
  cpuid: Buffer;
  msrs: Buffer;
  memoryMap: GfnRange[];
  specialPages: SpecialPage[];
  /** PV only: the migration stream around its page data */
  pvStream?: { head: Buffer; tail: Buffer };
}

function section(type: SectionType, payload: Buffer): Buffer {
  const header = Buffer.alloc(SECTION_HEADER_SIZE);
  header.writeUInt32LE(type, 0);
  header.writeUInt32LE(0, 4);
  header.writeBigUInt64LE(BigInt(payload.length), 8);
  header.writeUInt32LE(crc32(payload), 16);
  const pad = Buffer.alloc((8 - (payload.length % 8)) % 8);
  return Buffer.concat([header, payload, pad]);
}

export function encodeDescriptor(d: Descriptor): Buffer {
  const params = Buffer.alloc(d.params.length * 16);
  d.params.forEach(([index, value], i) => {
    params.writeUInt32LE(index, i * 16);
    params.writeBigUInt64LE(value, i * 16 + 8);
  });
  const map = Buffer.alloc(d.memoryMap.length * 16);
  d.memoryMap.forEach(([start, count], i) => {
    map.writeBigUInt64LE(BigInt(start), i * 16);
    map.writeBigUInt64LE(BigInt(count), i * 16 + 8);
  });
  const special = Buffer.alloc(d.specialPages.length * (16 + PAGE_SIZE));
  d.specialPages.forEach((p, i) => {
    const at = i * (16 + PAGE_SIZE);
    special.writeUInt32LE(p.param, at);
    special.writeBigUInt64LE(BigInt(p.gfn), at + 8);
    p.data.copy(special, at + 16, 0, PAGE_SIZE);
  });
  const sections = [
    section(SectionType.Meta, Buffer.from(JSON.stringify(d.meta), 'utf8')),
    section(SectionType.HvmContext, d.hvmContext),
    section(SectionType.HvmParams, params),
    section(SectionType.Cpuid, d.cpuid),
    section(SectionType.Msrs, d.msrs),
    section(SectionType.MemoryMap, map),
    section(SectionType.SpecialPages, special),
  ];
  if (d.pvStream) {
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(d.pvStream.head.length));
    sections.push(section(SectionType.PvStream, Buffer.concat([length, d.pvStream.head, d.pvStream.tail])));
  }
  const length = HEADER_SIZE + sections.reduce((n, s) => n + s.length, 0);
  const header = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(header, 0);
  header.writeUInt16LE(FORMAT_VERSION, 8);
  header.writeUInt16LE(HEADER_SIZE, 10);
  header.writeUInt32LE(sections.length, 12);
  header.writeBigUInt64LE(BigInt(length), 16);
  header.writeUInt32LE(crc32(header.subarray(0, 24)), 24);
  return Buffer.concat([header, ...sections]);
}

function records(buf: Buffer, size: number, what: string): number {
  if (buf.length % size) throw new DescriptorError(`${what} section is ${buf.length} bytes, not a multiple of ${size}`);
  return buf.length / size;
}

export function decodeDescriptor(file: Buffer, source = 'descriptor'): Descriptor {
  if (file.length < HEADER_SIZE) throw new DescriptorError(`${source} is truncated: ${file.length} bytes, the header alone is ${HEADER_SIZE}`);
  if (!file.subarray(0, 8).equals(MAGIC)) throw new DescriptorError(`${source} is not a snowflock descriptor (bad magic)`);
  const version = file.readUInt16LE(8);
  if (version !== FORMAT_VERSION) throw new DescriptorError(`${source} has format version ${version}; this snowflock reads version ${FORMAT_VERSION}`);
  if (crc32(file.subarray(0, 24)) !== file.readUInt32LE(24)) throw new DescriptorError(`${source} header is corrupt (checksum mismatch)`);
  const headerSize = file.readUInt16LE(10);
  if (headerSize !== HEADER_SIZE || file.readUInt32LE(28) !== 0) throw new DescriptorError(`${source} header has unknown fields set`);
  const count = file.readUInt32LE(12);
  const length = Number(file.readBigUInt64LE(16));
  if (file.length < length) throw new DescriptorError(`${source} is truncated: ${file.length} of ${length} bytes`);
  if (file.length > length) throw new DescriptorError(`${source} has ${file.length - length} trailing bytes after its end`);

  const payloads = new Map<SectionType, Buffer>();
  let at = headerSize;
  for (let i = 0; i < count; i++) {
    if (at + SECTION_HEADER_SIZE > length) throw new DescriptorError(`${source}: section ${i} header runs past the end`);
    const type = file.readUInt32LE(at) as SectionType;
    const size = Number(file.readBigUInt64LE(at + 8));
    // Flags and reserved words must be zero: a reader that ignored them could misread a newer file.
    if (file.readUInt32LE(at + 4) !== 0 || file.readUInt32LE(at + 20) !== 0) {
      throw new DescriptorError(`${source}: section ${SectionType[type] ?? type} has unknown flags`);
    }
    const sum = file.readUInt32LE(at + 16);
    const start = at + SECTION_HEADER_SIZE;
    if (start + size > length) throw new DescriptorError(`${source}: section ${SectionType[type] ?? type} runs past the end`);
    const payload = file.subarray(start, start + size);
    if (crc32(payload) !== sum) throw new DescriptorError(`${source}: section ${SectionType[type] ?? type} is corrupt (checksum mismatch)`);
    payloads.set(type, payload);
    const end = start + size + ((8 - (size % 8)) % 8);
    if (end > length || file.subarray(start + size, end).some((b) => b !== 0)) {
      throw new DescriptorError(`${source}: section ${SectionType[type] ?? type} is followed by corrupt padding`);
    }
    at = end;
  }
  const need = (t: SectionType) => {
    const p = payloads.get(t);
    if (!p) throw new DescriptorError(`${source} has no ${SectionType[t]} section`);
    return p;
  };

  let meta: DescriptorMeta;
  try {
    meta = JSON.parse(need(SectionType.Meta).toString('utf8')) as DescriptorMeta;
  } catch (e) {
    throw new DescriptorError(`${source}: META section is not valid JSON (${(e as Error).message})`);
  }
  if (meta.format !== 'snowflock-descriptor') throw new DescriptorError(`${source}: META does not describe a snowflock descriptor`);

  const paramBuf = need(SectionType.HvmParams);
  const params: [number, bigint][] = [];
  for (let i = 0; i < records(paramBuf, 16, 'HvmParams'); i++) params.push([paramBuf.readUInt32LE(i * 16), paramBuf.readBigUInt64LE(i * 16 + 8)]);
  const mapBuf = need(SectionType.MemoryMap);
  const memoryMap: GfnRange[] = [];
  for (let i = 0; i < records(mapBuf, 16, 'MemoryMap'); i++) {
    memoryMap.push([Number(mapBuf.readBigUInt64LE(i * 16)), Number(mapBuf.readBigUInt64LE(i * 16 + 8))]);
  }
  const specialBuf = need(SectionType.SpecialPages);
  const specialPages: SpecialPage[] = [];
  for (let i = 0; i < records(specialBuf, 16 + PAGE_SIZE, 'SpecialPages'); i++) {
    const at2 = i * (16 + PAGE_SIZE);
    specialPages.push({
      param: specialBuf.readUInt32LE(at2),
      gfn: Number(specialBuf.readBigUInt64LE(at2 + 8)),
      data: Buffer.from(specialBuf.subarray(at2 + 16, at2 + 16 + PAGE_SIZE)),
    });
  }
  const cpuid = Buffer.from(need(SectionType.Cpuid));
  const msrs = Buffer.from(need(SectionType.Msrs));
  records(cpuid, 24, 'Cpuid');
  records(msrs, 16, 'Msrs');
  const d: Descriptor = { meta, hvmContext: Buffer.from(need(SectionType.HvmContext)), params, cpuid, msrs, memoryMap, specialPages };
  const pv = payloads.get(SectionType.PvStream);
  if (pv) {
    const headLength = pv.length >= 8 ? Number(pv.readBigUInt64LE(0)) : -1;
    if (headLength < 0 || 8 + headLength > pv.length) throw new DescriptorError(`${source}: PvStream section is malformed`);
    d.pvStream = { head: Buffer.from(pv.subarray(8, 8 + headLength)), tail: Buffer.from(pv.subarray(8 + headLength)) };
  }
  validateDescriptor(d, source);
  return d;
}

/** The control/ nodes a kernel announces and a clone carries over from its parent. */
export const CONTROL_FEATURES = ['feature-poweroff', 'feature-reboot', 'feature-suspend', 'feature-s3', 'feature-s4'];

function validateMemoryTargets(meta: DescriptorMeta, fail: (why: string) => never): void {
  const { staticMaxKiB, targetKiB } = meta.memory;
  if (staticMaxKiB === undefined && targetKiB === undefined) return;
  const maxKiB = meta.vm.maxPages * 4;
  if (!Number.isInteger(staticMaxKiB) || staticMaxKiB! < 1 || staticMaxKiB! > maxKiB) fail(`bad memory static-max ${staticMaxKiB} KiB (Xen's limit is ${maxKiB} KiB)`);
  if (!Number.isInteger(targetKiB) || targetKiB! < 1 || targetKiB! > staticMaxKiB!) fail(`bad memory target ${targetKiB} KiB (static-max ${staticMaxKiB} KiB)`);
}

/** Cross-checks that a well-formed file also describes a buildable VM. */
export function validateDescriptor(d: Descriptor, source = 'descriptor'): void {
  const fail = (why: string): never => {
    throw new DescriptorError(`${source}: ${why}`);
  };
  const vm = d.meta.vm;
  if (!vm || !Number.isInteger(vm.maxVcpus) || vm.maxVcpus < 1 || vm.maxVcpus > 128) fail(`bad vCPU count ${vm?.maxVcpus}`);
  if (!Number.isInteger(vm.maxPages) || vm.maxPages < 1) fail(`bad memory size ${vm.maxPages} pages`);
  validateMemoryTargets(d.meta, fail);
  if (d.meta.libxl !== undefined) {
    try {
      checkConfig(d.meta.libxl, `${source}: libxl configuration`);
    } catch (e) {
      fail((e as Error).message.slice(source.length + 2));
    }
  }
  if (d.meta.vbds !== undefined) {
    // The disks a clone gets: it crossed hosts, and names end up in QMP commands and xenstore paths.
    const name = /^[A-Za-z0-9][\w.-]{0,63}$/;
    if (!Array.isArray(d.meta.vbds)) fail('vbds is not a list');
    for (const v of d.meta.vbds) {
      if (!v || !Number.isInteger(v.devid) || v.devid < 0 || !/^[a-z]{1,8}[a-z0-9]{0,8}$/.test(String(v.vdev)) || (v.mode !== 'r' && v.mode !== 'w')
        || !name.test(String(v.family)) || !name.test(String(v.vm)) || !name.test(String(v.disk))) fail(`bad vbd ${JSON.stringify(v)}`);
    }
    if (new Set(d.meta.vbds.map((v) => v.devid)).size !== d.meta.vbds.length) fail('two vbds with one device number');
  }
  for (const [k, v] of Object.entries(d.meta.control ?? {})) {
    if (!CONTROL_FEATURES.includes(k) || (v !== '0' && v !== '1')) fail(`bad control feature ${k}=${String(v)}`);
  }
  if (d.meta.source?.type === 'pv') {
    // A PV descriptor's state is its stream; there is no HVM state or memory map.
    if (!d.pvStream || d.pvStream.head.length < 40 || d.pvStream.tail.length < 8) fail('PV descriptor without its migration stream');
    if (!Number.isInteger(d.meta.memory.imageBytes) || d.meta.memory.imageBytes! < 8) fail('PV descriptor without the size of its page data');
    return;
  }
  if (d.hvmContext.length < 16) fail('HVM context is empty');
  let pages = 0;
  let end = -1;
  for (const [start, count] of d.memoryMap) {
    if (!Number.isInteger(start) || !Number.isInteger(count) || count < 1) fail(`bad memory range [${start}, +${count}]`);
    if (start < end) fail('memory ranges overlap or are out of order');
    end = start + count;
    pages += count;
  }
  if (pages !== d.meta.memory.pages) fail(`memory map holds ${pages} pages but META says ${d.meta.memory.pages}`);
  for (const p of d.specialPages) {
    if (!d.memoryMap.some(([s, c]) => p.gfn >= s && p.gfn < s + c)) fail(`special page gfn ${p.gfn} is outside the memory map`);
  }
  for (const [index] of d.params) if (index >= 64) fail(`HVM param index ${index} out of range`);
}
