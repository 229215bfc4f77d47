// Which of Xen's memory features this hypervisor really offers, found by trying each on
// a probe domain: mem_paging (memtap), mem_sharing (same-host fork), mem_access.
#pragma once

#include <string>

#include "xen_headers.h"

namespace snowflock {

struct FeatureResult {
  bool available = false;
  int err = 0;          // errno of the refusal, 0 when available
  std::string reason;   // what the refusal means, in words
  std::string xen_log;
};

struct FeatureReport {
  bool hap = false;
  FeatureResult mem_paging, mem_sharing, mem_access;
};

FeatureReport ProbeFeatures(xc_interface* xch);

}  // namespace snowflock
