#include "interfaces.h"

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>

#include "xc_handle.h"
#include "xen_error.h"
#include "xen_libs.h"
#include "xen_logger.h"

namespace snowflock {

namespace {

// open() returns true on success; close is called only then. The result names why not.
Napi::Object Try(Napi::Env env, const char* name, const std::function<bool()>& open_and_close) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("name", name);
  ClearXenLog();
  errno = 0;
  bool ok = open_and_close();
  int err = errno;
  std::string log = TakeXenLog();
  r.Set("ok", ok);
  if (!ok) {
    std::string why = std::string(strerror(err ? err : ENOENT));
    if (!log.empty()) why += "; xen: " + log;
    r.Set("error", why);
  }
  return r;
}

}  // namespace

Napi::Value ProbeInterfaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const XenLibs& xen = Xen();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  out[i++] = Try(env, "xenctrl", [] {
    try {
      XcHandle h;
      return true;
    } catch (const XenError& e) {
      RecordXenLog(e.xen_log());
      errno = e.err();
      return false;
    }
  });
  out[i++] = Try(env, "xenforeignmemory", [&] {
    auto* h = xen.xenforeignmemory_open(CapturingLogger(), 0);
    return h && xen.xenforeignmemory_close(h) == 0;
  });
  out[i++] = Try(env, "xenevtchn", [&] {
    auto* h = xen.xenevtchn_open(CapturingLogger(), 0);
    return h && xen.xenevtchn_close(h) == 0;
  });
  out[i++] = Try(env, "xengnttab", [&] {
    auto* h = xen.xengnttab_open(CapturingLogger(), 0);
    return h && xen.xengnttab_close(h) == 0;
  });
  out[i++] = Try(env, "xenstore", [&] {
    struct xs_handle* h = xen.xs_open(0);
    if (h) xen.xs_close(h);
    return h != nullptr;
  });
  return out;
}

}  // namespace snowflock
