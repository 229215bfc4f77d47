// Builds a new HVM/PVH domain from descriptor state: create, limits, CPU policy, TSC,
// memory (from a full image, or left for memtap), special pages, params, vCPU context,
// the store/console event channels at the ports the guest remembers, and seeded grant
// entries so xenstored and xenconsoled can map the rings. Leaves the domain paused.
// Any failure destroys the half-built domain before the error leaves.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "domain_state.h"

namespace snowflock {

struct BuildSpec {
  std::array<uint8_t, 16> handle{};  // the clone's UUID
  bool hap = true;
  uint32_t max_vcpus = 1;
  uint32_t emulation_flags = 0;
  uint64_t max_pages = 0;
  uint64_t paging_pool_bytes = 0;
  uint32_t tsc_mode = 0, gtsc_khz = 0, incarnation = 0;
  uint64_t elapsed_nsec = 0;
  std::vector<xen_cpuid_leaf_t> cpuid;
  std::vector<xen_msr_entry_t> msrs;
  std::vector<uint8_t> hvm_context;
  std::vector<std::pair<uint32_t, uint64_t>> params;
  std::vector<GfnRange> populated;
  std::vector<SpecialPage> special;
  std::string memory_image;  // path of the full memory image; its pages follow `populated`
  uint64_t image_offset = 0;  // bytes before the first page (the image's own header)
};

struct BuildResult {
  uint32_t domid = 0;
  uint32_t store_port = 0, console_port = 0;
  uint64_t store_gfn = 0, console_gfn = 0;
  uint64_t pages = 0;
  uint32_t partial_populates = 0;  // populate calls Xen cut short (and we continued)
};

BuildResult BuildDomain(xc_interface* xch, const BuildSpec& spec);

}  // namespace snowflock
