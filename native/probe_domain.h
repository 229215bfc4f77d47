// An empty, never-run HVM domain used to ask the hypervisor what it really supports
// (a build option is only visible by trying it). Destroyed on every path out.
#pragma once

#include <cstdint>

#include "xen_headers.h"

namespace snowflock {

class ProbeDomain {
 public:
  static constexpr uint64_t kRingGfn = 0x100;  // one populated page, the would-be vm_event ring

  ProbeDomain(xc_interface* xch, bool hap);  // throws XenError
  ~ProbeDomain();
  ProbeDomain(const ProbeDomain&) = delete;
  ProbeDomain& operator=(const ProbeDomain&) = delete;

  uint32_t domid() const { return domid_; }

 private:
  void Destroy();  // idempotent

  xc_interface* xch_;
  uint32_t domid_ = 0;
  bool created_ = false;
};

}  // namespace snowflock
