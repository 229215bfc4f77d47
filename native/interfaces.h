// Opens and closes each Xen user-space interface once, to tell which ones this host offers.
#pragma once

#include <napi.h>

namespace snowflock {

Napi::Value ProbeInterfaces(const Napi::CallbackInfo& info);

}  // namespace snowflock
