// Letting a cooperatively suspended HVM/PVH guest carry on in the same domain.
#pragma once

#include <cstdint>

#include "xen_headers.h"

namespace snowflock {

// Makes the guest's SCHEDOP_shutdown(suspend) return 1 ("cancelled") and resumes the domain,
// so its kernel keeps its event channels, vcpu_info and grants instead of rebuilding them.
// The domain must be shut down for suspend.
void CancelSuspend(xc_interface* xch, uint32_t domid);

}  // namespace snowflock
