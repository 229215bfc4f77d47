#include "no_xen.h"

#include "xen_error.h"

namespace snowflock {

namespace {

constexpr const char* kWhy =
    "the snowflock addon was built without Xen headers; install libxen-dev and run `npm rebuild snowflock`";

Napi::Value Unavailable(const Napi::CallbackInfo& info) {
  throw XenError("", kWhy, 0, "").ToJs(info.Env());
}

Napi::Value NoLibraries(const Napi::CallbackInfo& info) { return Napi::Array::New(info.Env()); }

}  // namespace

void RegisterWithoutXen(Napi::Env env, Napi::Object exports) {
  exports.Set("libraries", Napi::Function::New(env, NoLibraries, "libraries"));
  exports.Set("probeInterfaces", Napi::Function::New(env, Unavailable, "probeInterfaces"));
  // `new XenControl()` throws the same explanation.
  exports.Set("XenControl", Napi::Function::New(env, Unavailable, "XenControl"));
  exports.Set("XenStore", Napi::Function::New(env, Unavailable, "XenStore"));
  exports.Set("Memtap", Napi::Function::New(env, Unavailable, "Memtap"));
}

}  // namespace snowflock
