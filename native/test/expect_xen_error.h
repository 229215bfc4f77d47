// For native tests: runs fn, which must throw XenError, and returns it.
#pragma once

#include "../xen_error.h"
#include "tap.h"

namespace snowflock {

template <typename Fn>
XenError ExpectXenError(Fn&& fn) {
  try {
    fn();
  } catch (const XenError& e) {
    return e;
  }
  throw tap::CheckFailed{"expected a XenError, nothing was thrown"};
}

}  // namespace snowflock
