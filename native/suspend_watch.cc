#include "suspend_watch.h"

#include <cstdlib>

#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {
constexpr char kToken[] = "snowflock-suspend";
}

SuspendWatch::SuspendWatch(uint32_t domid)
    : control_("/local/domain/" + std::to_string(domid) + "/control/shutdown"),
      // Written by suspendDomain (lib/xen/suspend.ts) next to memtap's record, dom0-only.
      own_marker_("/local/domain/0/snowflock/memtap/" + std::to_string(domid) + "/own-suspend") {
  const XenLibs& xen = Xen();
  xsh_ = xen.xs_open(0);
  if (!xsh_) ThrowXenError("xs_open", "xenstored (suspend watch of domain " + std::to_string(domid) + ")");
  if (!xen.xs_watch(xsh_, control_.c_str(), kToken)) {
    int err = errno;
    xen.xs_close(xsh_);
    xsh_ = nullptr;
    errno = err;
    ThrowXenError("xs_watch", control_);
  }
}

SuspendWatch::~SuspendWatch() {
  if (!xsh_) return;
  const XenLibs& xen = Xen();
  xen.xs_unwatch(xsh_, control_.c_str(), kToken);
  xen.xs_close(xsh_);
}

int SuspendWatch::fd() const { return Xen().xs_fileno(xsh_); }

std::string SuspendWatch::Read(const std::string& path) {
  unsigned int len = 0;
  void* value = Xen().xs_read(xsh_, XBT_NULL, path.c_str(), &len);
  if (!value) return "";
  std::string s(static_cast<const char*>(value), len);
  free(value);
  return s;
}

bool SuspendWatch::SuspendRequested() {
  bool fired = false;
  for (char** event; (event = Xen().xs_check_watch(xsh_)) != nullptr;) {
    free(event);
    fired = true;
  }
  return fired && Read(control_) == "suspend" && Read(own_marker_) != "1";
}

}  // namespace snowflock
