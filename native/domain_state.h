// The state a clone needs, read from a paused (suspended) HVM/PVH domain: the raw material
// of a VM descriptor. TypeScript lays it out in the descriptor file; nothing here decides.
#pragma once

#ifndef SNOWFLOCK_WITHOUT_JS  // the native tests build without Node
#include <napi.h>
#endif

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "foreign_memory.h"
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

// Scans of guest memory running at once, each on one of the addon's worker threads (libuv has
// four): more are refused with EBUSY, so captures cannot take every worker.
constexpr int kMaxConcurrentScans = 2;

// The highest gfn + 1 a scan accepts for a domain of max_pages: its RAM above 4 GiB, with
// 4 GiB of room for holes and what the guest maps above its RAM.
uint64_t ScanLimit(uint64_t max_pages);

// Which gfns are populated: foreign-maps each candidate range in batches, a hole comes back as
// an error. A max_gpfn (which the guest can raise) at or beyond ScanLimit is refused with E2BIG
// before anything is mapped; the scan stops with ECANCELED once keep_going() returns false or
// CancelDomainScans(domid) is called (checked before each batch); EBUSY when
// kMaxConcurrentScans scans are running.
std::vector<GfnRange> ScanPopulated(ForeignMemory& fmem, uint32_t domid, uint64_t max_pages, uint64_t max_gpfn,
                                    const std::function<bool()>& keep_going);

// Stops the scans of domid's memory running now (their capture fails with ECANCELED).
void CancelDomainScans(uint32_t domid);

// Writes header, then every populated page in the order of `populated`, to path (created,
// truncated, mode 0600, never through a symbolic link; removed again on failure). Returns the
// number of pages written.
uint64_t WriteMemoryImage(uint32_t domid, const std::vector<GfnRange>& populated, const std::string& path,
                          const std::vector<uint8_t>& header);

#ifndef SNOWFLOCK_WITHOUT_JS
Napi::Object DomainStateToJs(Napi::Env env, const DomainState& state);
#endif

}  // namespace snowflock
