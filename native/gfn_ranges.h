// Walking guest-frame ranges in batches of consecutive gfns: the unit in which pages are
// foreign-mapped, scanned, imaged and restored.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "xen_headers.h"

namespace snowflock {

struct GfnRange {
  uint64_t start;
  uint64_t count;
};

// Calls fn(gfns) for each run of at most `batch` consecutive gfns, ranges in order.
template <typename Fn>
void ForEachGfnBatch(const std::vector<GfnRange>& ranges, size_t batch, Fn&& fn) {
  for (const GfnRange& r : ranges) {
    for (uint64_t base = r.start; base < r.start + r.count; base += batch) {
      size_t n = size_t(std::min<uint64_t>(batch, r.start + r.count - base));
      std::vector<xen_pfn_t> gfns(n);
      for (size_t i = 0; i < n; i++) gfns[i] = base + i;
      fn(gfns);
    }
  }
}

}  // namespace snowflock
