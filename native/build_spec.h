// Reads the JS build request (validated by lib/descriptor) into a BuildSpec (or, for a PV
// guest, a PvRestoreSpec), on the JS thread, before the build runs off it (the baton pattern).
#pragma once

#include <napi.h>

#include "domain_builder.h"
#include "pv_stream.h"

namespace snowflock {

BuildSpec ParseBuildSpec(Napi::Env env, Napi::Object o);
PvRestoreSpec ParsePvRestoreSpec(Napi::Env env, Napi::Object o);
std::vector<GfnRange> ParseRanges(Napi::Env env, Napi::Value v);

}  // namespace snowflock
