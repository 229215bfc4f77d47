// Reads the JS build request (validated by lib/descriptor) into a BuildSpec, on the JS
// thread, before the build runs off it (the baton pattern).
#pragma once

#include <napi.h>

#include "domain_builder.h"

namespace snowflock {

BuildSpec ParseBuildSpec(Napi::Env env, Napi::Object o);
std::vector<GfnRange> ParseRanges(Napi::Env env, Napi::Value v);

}  // namespace snowflock
