// Owned libxenctrl handle. Opening it is what tells us whether this is a Xen dom0 with
// privcmd; the failure carries Xen's own explanation.
#pragma once

#include "xen_headers.h"

namespace snowflock {

class XcHandle {
 public:
  XcHandle();  // throws XenError
  ~XcHandle();
  XcHandle(const XcHandle&) = delete;
  XcHandle& operator=(const XcHandle&) = delete;

  xc_interface* get() const { return xch_; }
  void Close();  // idempotent

 private:
  xc_interface* xch_ = nullptr;
};

}  // namespace snowflock
