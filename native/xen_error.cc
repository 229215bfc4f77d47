#include "xen_error.h"

#include <cerrno>
#include <cstring>

namespace snowflock {

namespace {
thread_local std::string last_xen_log;
}  // namespace

const char* ErrnoName(int err) {
#ifdef __GLIBC__
  const char* name = strerrorname_np(err);
  return name ? name : "EUNKNOWN";
#else
  return "EUNKNOWN";
#endif
}

void ClearXenLog() { last_xen_log.clear(); }
std::string TakeXenLog() {
  std::string line;
  line.swap(last_xen_log);
  return line;
}
void RecordXenLog(const std::string& line) { last_xen_log = line; }

static std::string Compose(const std::string& call, const std::string& subject, int err,
                           const std::string& xen_log) {
  if (err == 0) return subject;  // not a failed call: Xen is unavailable, subject says why
  std::string msg = call;
  if (!subject.empty()) msg += "(" + subject + ")";
  msg += " failed: " + std::string(strerror(err)) + " (" + ErrnoName(err) + ")";
  if (!xen_log.empty()) msg += "; xen: " + xen_log;
  return msg;
}

XenError::XenError(std::string call, std::string subject, int err, std::string xen_log)
    : std::runtime_error(Compose(call, subject, err, xen_log)),
      call_(std::move(call)),
      subject_(std::move(subject)),
      xen_log_(std::move(xen_log)),
      errno_(err) {}

void ThrowXenError(const char* call, const std::string& subject) {
  int err = errno;
  throw XenError(call, subject, err, TakeXenLog());
}

void ThrowUnavailable(const std::string& why) { throw XenError("", why, 0, ""); }

}  // namespace snowflock
