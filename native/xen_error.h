// Errors from Xen calls: which call, errno, and the last line Xen's own logger printed.
#pragma once

#include <stdexcept>
#include <string>

// Declared, not included: code that only throws XenError (and the native unit tests) stays
// free of N-API; ToJs is defined in xen_error_js.cc, which only the addon links.
namespace Napi {
class Env;
class Error;
}  // namespace Napi

namespace snowflock {

class XenError : public std::runtime_error {
 public:
  // call: the library function, e.g. "xc_domain_pause"; subject: what it acted on, e.g. "domain 7".
  XenError(std::string call, std::string subject, int err, std::string xen_log);

  const std::string& call() const { return call_; }
  const std::string& subject() const { return subject_; }
  int err() const { return errno_; }
  const std::string& xen_log() const { return xen_log_; }

  Napi::Error ToJs(Napi::Env env) const;

 private:
  std::string call_, subject_, xen_log_;
  int errno_;
};

// A Xen library reports through a logger; the addon installs one that keeps the last
// warning or error per thread so that it can travel with the JS error.
void ClearXenLog();
std::string TakeXenLog();
void RecordXenLog(const std::string& line);

// errno's symbolic name, e.g. "EINVAL" (the JS error's code).
const char* ErrnoName(int err);

// Throws XenError for the calling thread's errno and Xen log line.
[[noreturn]] void ThrowXenError(const char* call, const std::string& subject);

// Error for a build without Xen headers, or a host without Xen libraries.
[[noreturn]] void ThrowUnavailable(const std::string& why);

}  // namespace snowflock
