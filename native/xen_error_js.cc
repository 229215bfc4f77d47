// XenError as a JS Error, kept apart from xen_error.cc so that only the addon needs N-API.
#include <napi.h>

#include "xen_error.h"

namespace snowflock {

Napi::Error XenError::ToJs(Napi::Env env) const {
  Napi::Error e = Napi::Error::New(env, what());
  e.Set("call", Napi::String::New(env, call_));
  e.Set("subject", Napi::String::New(env, subject_));
  e.Set("errno", Napi::Number::New(env, errno_));
  e.Set("code", Napi::String::New(env, errno_ ? ErrnoName(errno_) : "ENOXEN"));
  e.Set("xenLog", Napi::String::New(env, xen_log_));
  return e;
}

}  // namespace snowflock
