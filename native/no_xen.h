// The addon built without Xen headers: same exports, each saying why it cannot work.
#pragma once

#include <napi.h>

namespace snowflock {

void RegisterWithoutXen(Napi::Env env, Napi::Object exports);

}  // namespace snowflock
