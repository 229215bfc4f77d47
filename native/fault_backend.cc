#include "fault_backend.h"

#include <cerrno>

#include "xen_error.h"

namespace snowflock {

std::unique_ptr<FaultBackend> OpenPagingBackend(xc_interface* xch, uint32_t domid, bool takeover);
std::unique_ptr<FaultBackend> OpenAccessBackend(xc_interface* xch, uint32_t domid);

std::unique_ptr<FaultBackend> OpenFaultBackend(FaultMode mode, xc_interface* xch, uint32_t domid, bool takeover) {
  if (mode == FaultMode::kPaging) return OpenPagingBackend(xch, domid, takeover);
  if (takeover) throw XenError("memtap", "domain " + std::to_string(domid) + ": the mem_access backend cannot take over a ring", EINVAL, "");
  return OpenAccessBackend(xch, domid);
}

}  // namespace snowflock
