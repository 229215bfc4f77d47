// What the hypervisor says about itself: version, capabilities, physical resources.
#pragma once

#include <napi.h>

#include "xen_headers.h"

namespace snowflock {

Napi::Value XenVersion(Napi::Env env, xc_interface* xch);
Napi::Value PhysInfo(Napi::Env env, xc_interface* xch);

}  // namespace snowflock
