// Entry point of the snowflock addon. The addon holds no policy: it wraps Xen calls,
// owns Xen resources (RAII) and reports failures precisely. TypeScript decides the rest.
#include <napi.h>

#include <cstdlib>

#include "crash_trace.h"
#include "gcm_frames_binding.h"
#include "tcp_listener.h"
#include "xen_error.h"

#ifdef SNOWFLOCK_HAVE_XEN
#include "interfaces.h"
#include "memtap_binding.h"
#include "xen_control.h"
#include "xenstore.h"
#include "xen_libs.h"
#else
#include "no_xen.h"
#endif

namespace snowflock {

#ifdef SNOWFLOCK_HAVE_XEN
static Napi::Value Libraries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto libs = DescribeLibraries();
  Napi::Array out = Napi::Array::New(env, libs.size());
  for (size_t i = 0; i < libs.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", libs[i].name);
    o.Set("loaded", !libs[i].path.empty());
    if (!libs[i].path.empty()) o.Set("path", libs[i].path);
    if (!libs[i].error.empty()) o.Set("error", libs[i].error);
    out[uint32_t(i)] = o;
  }
  return out;
}

static Napi::Value InterfacesGuarded(const Napi::CallbackInfo& info) {
  try {
    return ProbeInterfaces(info);
  } catch (const XenError& e) {
    throw e.ToJs(info.Env());
  }
}
#endif

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  if (getenv("SNOWFLOCK_CRASH_TRACE")) InstallCrashTrace();
  FrameCipher::Register(env, exports);  // the memserver's sealed frames: no Xen needed
  RegisterTcpListener(env, exports);    // disk fronts' listening sockets: no Xen needed
#ifdef SNOWFLOCK_HAVE_XEN
  exports.Set("builtWithXen", true);
  exports.Set("libraries", Napi::Function::New(env, Libraries, "libraries"));
  exports.Set("probeInterfaces", Napi::Function::New(env, InterfacesGuarded, "probeInterfaces"));
  XenControl::Register(env, exports);
  XenStore::Register(env, exports);
  MemtapBinding::Register(env, exports);
#else
  exports.Set("builtWithXen", false);
  RegisterWithoutXen(env, exports);
#endif
  return exports;
}

}  // namespace snowflock

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return snowflock::Init(env, exports); }

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitAddon)
