import { describe, expect, it } from 'vitest';
import { FamilyFilterError, familyRuleset, tableName } from '../../../lib/net/family-filter.js';

const family = { family: 'f0123456789abcdef', parentMacs: ['00:16:3e:00:00:01'], cloneMacs: ['00:16:3e:00:00:02', '00:16:3e:00:00:03'], cloneVifs: [{ name: 'vif7.0', mac: '00:16:3e:00:00:02' }], parentVifs: ['vif5.0'] };

describe('a family\'s nftables filter', () => {
  it('is one bridge table per family, replaced whole when installed again', () => {
    const rules = familyRuleset(family);
    expect(tableName(family.family)).toBe('sf-f0123456789a');
    expect(rules.split('\n').slice(0, 3)).toEqual(['table bridge sf-f0123456789a { }', 'delete table bridge sf-f0123456789a', 'table bridge sf-f0123456789a {']);
    expect(rules).toContain('set members { type ether_addr; elements = { 00:16:3e:00:00:01, 00:16:3e:00:00:02, 00:16:3e:00:00:03 }; }');
    expect(rules).toContain('set clone_ports { type ifname; elements = { "vif7.0" }; }');
    expect(rules).toContain('set family_ports { type ifname; elements = { "vif5.0", "vif7.0" }; }');
  });
  it('knows a clone by its port, and pairs each clone port with the only source MAC it may send', () => {
    const rules = familyRuleset(family);
    expect(rules).toContain('set clone_port_macs { type ifname . ether_addr; elements = { "vif7.0" . 00:16:3e:00:00:02 }; }');
    expect(rules).toContain('iifname @clone_ports iifname . ether saddr != @clone_port_macs drop');
    expect(rules).toContain('iifname @clone_ports ether type arp iifname . arp saddr ether != @clone_port_macs drop');
    expect(rules).not.toMatch(/ether saddr @clones/);
  });
  it('leaves a set empty rather than writing an empty element list (the parent on another host)', () => {
    expect(familyRuleset({ ...family, parentVifs: [] })).toContain('set family_ports { type ifname; elements = { "vif7.0" }; }');
    expect(familyRuleset({ ...family, parentVifs: [], cloneVifs: [] })).toContain('set clone_ports { type ifname; }');
  });
  it('refuses what could inject rules or match nothing, naming it', () => {
    expect(() => familyRuleset({ ...family, cloneMacs: ['00:16:3e:00:00:02; flush ruleset'] })).toThrow(new FamilyFilterError('bad MAC "00:16:3e:00:00:02; flush ruleset"'));
    expect(() => familyRuleset({ ...family, cloneVifs: [{ name: 'vif7.0" }', mac: '00:16:3e:00:00:02' }] })).toThrow(/bad interface name/);
    expect(() => familyRuleset({ ...family, cloneVifs: [{ name: 'vif7.0', mac: '00:16:3E:00:00:02' }] })).toThrow(new FamilyFilterError('bad MAC "00:16:3E:00:00:02"'));
    expect(() => familyRuleset({ ...family, cloneMacs: [] })).toThrow(/needs the clones' MACs/);
    expect(() => tableName('a b')).toThrow(/bad family id/);
  });
});
