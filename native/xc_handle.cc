#include "xc_handle.h"

#include "xen_error.h"
#include "xen_libs.h"
#include "xen_logger.h"

namespace snowflock {

XcHandle::XcHandle() {
  const XenLibs& xen = Xen();
  ClearXenLog();
  xch_ = xen.xc_interface_open(CapturingLogger(), CapturingLogger(), 0);
  if (!xch_) ThrowXenError("xc_interface_open", "");
}

XcHandle::~XcHandle() { Close(); }

void XcHandle::Close() {
  if (xch_) Xen().xc_interface_close(xch_);
  xch_ = nullptr;
}

}  // namespace snowflock
