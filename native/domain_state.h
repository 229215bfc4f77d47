// The state a clone needs, read from a paused (suspended) HVM/PVH domain: the raw material
// of a VM descriptor. TypeScript lays it out in the descriptor file; nothing here decides.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gfn_ranges.h"
#include "xen_headers.h"

namespace snowflock {

struct SpecialPage {
  uint32_t param;  // the HVM param that names it (store ring, console ring, ...)
  uint64_t gfn;
  std::vector<uint8_t> data;
};

struct DomainState {
  xc_domaininfo_t info{};
  std::vector<uint8_t> hvm_context;
  std::vector<std::pair<uint32_t, uint64_t>> params;  // non-zero HVM params
  std::vector<xen_cpuid_leaf_t> cpuid;
  std::vector<xen_msr_entry_t> msrs;
  uint32_t tsc_mode = 0, gtsc_khz = 0, incarnation = 0;
  uint64_t elapsed_nsec = 0;
  uint64_t paging_pool_bytes = 0;
  uint64_t max_gpfn = 0;
  std::vector<GfnRange> populated;
  std::vector<SpecialPage> special;
};

// Reads everything but guest RAM. The domain must be paused; PV domains are refused.
DomainState CaptureDomainState(xc_interface* xch, uint32_t domid);

// Writes header, then every populated page in the order of `populated`, to path (created,
// truncated, mode 0600, never through a symbolic link; removed again on failure). Returns the
// number of pages written.
uint64_t WriteMemoryImage(uint32_t domid, const std::vector<GfnRange>& populated, const std::string& path,
                          const std::vector<uint8_t>& header);

Napi::Object DomainStateToJs(Napi::Env env, const DomainState& state);

}  // namespace snowflock
