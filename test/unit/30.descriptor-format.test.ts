// The descriptor file format on its own: round trip, and every way a file can be bad.
import { describe, expect, it } from 'vitest';
import { crc32 } from 'node:zlib';
import { decodeDescriptor, encodeDescriptor } from '../../lib/descriptor/format.js';
import { DescriptorError } from '../../lib/descriptor/errors.js';
import { devicesClonesCannotHave } from '../../lib/descriptor/capture.js';
import { sampleDescriptor } from '../fixtures/descriptor.js';

const sample = sampleDescriptor;

describe('descriptor format', () => {
  it('round-trips every section byte for byte', () => {
    const d = sample();
    const bytes = encodeDescriptor(d);
    const back = decodeDescriptor(bytes);
    expect(back.meta).toEqual(d.meta);
    expect(back.params).toEqual(d.params);
    expect(back.memoryMap).toEqual(d.memoryMap);
    expect(back.hvmContext.equals(d.hvmContext)).toBe(true);
    expect(back.cpuid.equals(d.cpuid)).toBe(true);
    expect(back.msrs.equals(d.msrs)).toBe(true);
    expect(back.specialPages.map((p) => [p.param, p.gfn, p.data.equals(d.specialPages.find((q) => q.gfn === p.gfn)!.data)])).toEqual([
      [1, 0xfeffc, true],
      [17, 0xfefff, true],
    ]);
    expect(encodeDescriptor(back).equals(bytes)).toBe(true);
  });

  it('is small next to the memory it describes (about 0.1% in SnowFlock)', () => {
    const bytes = encodeDescriptor(sample());
    expect(bytes.length / ((32768 + 2) * 4096)).toBeLessThan(0.001);
  });

  const bad = (mutate: (b: Buffer) => Buffer, message: RegExp) => {
    const bytes = mutate(encodeDescriptor(sample()));
    expect(() => decodeDescriptor(bytes, 'f.sfd')).toThrow(DescriptorError);
    expect(() => decodeDescriptor(bytes, 'f.sfd')).toThrow(message);
  };

  it('refuses a file that is not a descriptor', () => bad(() => Buffer.from('#!/bin/sh\necho not a descriptor, clearly\n'), /not a snowflock descriptor/));
  it('refuses a truncated header', () => bad((b) => b.subarray(0, 10), /truncated: 10 bytes/));
  it('refuses a truncated body', () => bad((b) => b.subarray(0, b.length - 1), /truncated/));
  it('refuses trailing bytes', () => bad((b) => Buffer.concat([b, Buffer.alloc(3)]), /3 trailing bytes/));
  it('refuses another format version', () =>
    bad((b) => {
      b.writeUInt16LE(7, 8);
      b.writeUInt32LE(crc32(b.subarray(0, 24)), 24);
      return b;
    }, /format version 7; this snowflock reads version 1/));
  it('refuses a corrupt header', () => bad((b) => { b[12]! ^= 1; return b; }, /header is corrupt/));
  it('refuses a corrupt section, naming it', () => bad((b) => { b[b.length - 200]! ^= 0x40; return b; }, /section SpecialPages is corrupt/));

  it('refuses a descriptor whose memory map disagrees with its META', () => {
    const d = sample();
    d.meta.memory.pages = 5;
    expect(() => decodeDescriptor(encodeDescriptor(d))).toThrow(/memory map holds 32770 pages but META says 5/);
  });

  it('refuses overlapping memory ranges and special pages outside memory', () => {
    const d = sample();
    d.memoryMap = [[0, 10], [5, 10]];
    d.meta.memory.pages = 20;
    expect(() => decodeDescriptor(encodeDescriptor(d))).toThrow(/overlap/);
    const e = sample();
    e.specialPages[0]!.gfn = 0x200000;
    expect(() => decodeDescriptor(encodeDescriptor(e))).toThrow(/special page gfn 2097152 is outside the memory map/);
  });

  it('catches every single-byte corruption with a DescriptorError', () => {
    const good = encodeDescriptor(sample());
    let caught = 0;
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(good);
      const at = Math.floor(Math.random() * b.length);
      b[at] = (b[at]! + 1 + Math.floor(Math.random() * 255)) & 0xff;
      try {
        decodeDescriptor(b);
      } catch (e) {
        expect(e).toBeInstanceOf(DescriptorError);
        caught++;
      }
    }
    // Every byte is covered: checksums, or fields that must be zero.
    expect(caught).toBe(2000);
  });
});

describe('devices a clone cannot be given', () => {
  it('allows vifs, no devices, and what libxl keeps under device/ that is not one', () => {
    expect(devicesClonesCannotHave({})).toBeNull();
    expect(devicesClonesCannotHave({ vif: ['0', '1'], suspend: ['event-channel'] })).toBeNull();
    expect(devicesClonesCannotHave({ vbd: [] })).toBeNull();
  });
  it('names disks and other kinds, with counts and why', () => {
    expect(devicesClonesCannotHave({ vif: ['0'], vbd: ['51712', '51728'], vkbd: ['0'] }))
      .toBe('2 vbd devices (not disk-family disks: start the parent with script=block-snowflock (docs/disks.md)), 1 vkbd device (not recreated for clones)');
  });
});
