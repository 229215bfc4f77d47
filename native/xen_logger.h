// A xentoollog logger that records Xen's warnings and errors for the calling thread
// (see xen_error.h) instead of printing them, so they reach JS with the failing call.
#pragma once

#include "xen_headers.h"

namespace snowflock {

// Shared, stateless, never destroyed: safe to hand to every Xen library handle.
xentoollog_logger* CapturingLogger();

}  // namespace snowflock
