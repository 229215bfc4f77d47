// Sees a toolstack ask a clone to suspend (control/shutdown = "suspend"): the start of
// `xl save`, and of the last round of `xl migrate`. Xen's save code cannot read a page that is
// still paged out (it records the frame as absent, and the restored guest finds a hole), so
// memtap holds the clone and loads every page before the guest can answer (settle).
// snowflock's own capture reads paged-out pages itself and marks its request (see suspend.ts).
#pragma once

#include <cstdint>
#include <string>

#include "xen_headers.h"

namespace snowflock {

class SuspendWatch {
 public:
  explicit SuspendWatch(uint32_t domid);
  ~SuspendWatch();
  SuspendWatch(const SuspendWatch&) = delete;
  SuspendWatch& operator=(const SuspendWatch&) = delete;

  int fd() const;
  // Takes the pending watch events; true when the clone is now asked to suspend by someone
  // other than snowflock.
  bool SuspendRequested();

 private:
  std::string Read(const std::string& path);

  struct xs_handle* xsh_ = nullptr;
  std::string control_;
  std::string own_marker_;
};

}  // namespace snowflock
