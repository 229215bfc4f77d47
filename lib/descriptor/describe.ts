// Human summary of a descriptor, for `snowflock descriptor inspect`.
import type { Descriptor } from './format.js';

const PARAM_NAMES: Record<number, string> = {
  0: 'callback_irq', 1: 'store_pfn', 2: 'store_evtchn', 4: 'pae_enabled', 5: 'ioreq_pfn', 6: 'bufioreq_pfn',
  12: 'ident_pt', 16: 'acpi_s_state', 17: 'console_pfn', 18: 'console_evtchn', 20: 'bufioreq_evtchn',
  23: 'nr_ioreq_server_pages', 24: 'vm_generation_id_addr', 27: 'paging_ring_pfn', 28: 'monitor_ring_pfn',
  29: 'sharing_ring_pfn', 32: 'triple_fault_reason', 33: 'altp2m', 36: 'x87_fip_width', 37: 'vm86_tss_sized', 38: 'mca_cap',
};

export function paramName(index: number): string {
  return PARAM_NAMES[index] ?? `param_${index}`;
}

export function describeDescriptor(d: Descriptor, fileBytes: number): string[] {
  const m = d.meta;
  const memBytes = m.memory.pages * 4096;
  const target = m.memory.targetKiB !== undefined ? `, balloon target ${Math.round(m.memory.targetKiB / 1024)} MiB of ${Math.round(m.memory.staticMaxKiB! / 1024)}` : '';
  const memory = `memory       ${Math.round((m.vm.maxPages * 4) / 1024)} MiB max${target}, ${m.memory.pages} pages`;
  const state = d.pvStream
    ? [
      `${memory} with data in the memory image`,
      `descriptor   ${fileBytes} bytes = ${((fileBytes / memBytes) * 100).toFixed(3)}% of that memory`,
      `pv stream    ${d.pvStream.head.length} + ${d.pvStream.tail.length} bytes around ${m.memory.imageBytes} bytes of page data (libxenguest migration stream)`,
    ]
    : [
      `${memory} populated in ${d.memoryMap.length} ranges`,
      `descriptor   ${fileBytes} bytes = ${((fileBytes / memBytes) * 100).toFixed(3)}% of populated memory`,
      `hvm context  ${d.hvmContext.length} bytes; cpuid ${d.cpuid.length / 24} leaves, ${d.msrs.length / 16} MSRs`,
      `params       ${d.params.map(([i, v]) => `${paramName(i)}=0x${v.toString(16)}`).join(' ')}`,
      `special      ${d.specialPages.map((p) => `${paramName(p.param)}@0x${p.gfn.toString(16)}`).join(' ') || 'none'}`,
    ];
  return [
    `source       ${m.source.name} (domain ${m.source.domid} on ${m.source.host}), ${m.source.type.toUpperCase()}, uuid ${m.source.uuid}`,
    `taken        ${m.createdAt} on Xen ${m.xen.version}${m.pauseMs !== undefined ? `, parent stopped ${m.pauseMs} ms` : ''}`,
    `vcpus        ${m.vm.maxVcpus}`,
    ...state,
    `devices      ${Object.entries(m.devices).map(([k, v]) => `${k}:${v.length}`).join(' ') || 'none'}`,
    `nics         ${(m.nics ?? []).map((n) => `vif${n.devid} ${n.mac} on ${n.bridge}`).join(', ') || 'none'} (clones get new MACs)`,
    d.pvStream
      ? `memory image id ${m.memory.imageId} (PV clones are eager)`
      : `memory image ${m.memory.imageId ? `id ${m.memory.imageId}` : 'none (lazy clones fetch memory on demand)'}`,
  ];
}
