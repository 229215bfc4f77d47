// Fakes of the Xen entry points the fault backends reach through Xen(): they record what
// they were asked, fail on demand, and keep guest pages so that writes can be read back.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "../xen_libs.h"

namespace snowflock::fake {

struct MemAccessCall {
  uint32_t domid;
  xenmem_access_t access;
  uint64_t first_gfn;
  uint32_t count;
  bool operator==(const MemAccessCall& o) const {
    return domid == o.domid && access == o.access && first_gfn == o.first_gfn && count == o.count;
  }
};
std::ostream& operator<<(std::ostream& out, const MemAccessCall& call);

struct ForeignMapCall {
  uint32_t domid;
  int prot;
  std::vector<uint64_t> gfns;
};

struct State {
  // xc_monitor_enable / xc_monitor_disable
  int monitor_enable_errno = 0;   // non-zero: fail with it
  uint32_t monitor_port = 42;     // Xen's end of the ring's event channel
  void* ring = nullptr;           // the zeroed page handed out (the backend munmaps it)
  std::vector<uint32_t> monitor_enabled, monitor_disabled;  // domids

  // xc_set_mem_access
  std::vector<MemAccessCall> mem_access_calls;
  size_t mem_access_fail_call = 0;  // 1-based index of the call that fails, 0: none
  int mem_access_errno = 0;

  // xenevtchn_*
  int bind_errno = 0;  // non-zero: bind_interdomain fails with it
  int local_port = 7001;
  int pending_port = -1;  // what xenevtchn_pending returns next
  int evtchn_opened = 0, evtchn_closed = 0;
  std::vector<std::pair<uint32_t, uint32_t>> bound;  // (domid, remote port)
  std::vector<int> unbound, unmasked, notified;

  // xenforeignmemory_*
  std::map<uint64_t, int> page_errno;  // gfn -> errno reported for that page alone
  int map_errno = 0;                   // non-zero: the whole map fails with it
  std::string map_log;                 // logged through the handle's logger when it does
  int fmem_opened = 0, fmem_closed = 0;
  std::vector<ForeignMapCall> map_calls;
  std::map<uint64_t, std::vector<uint8_t>> guest;  // page contents written through mappings
  std::function<bool(uint64_t)> hole;    // gfn -> true: not populated (the map reports -ENOENT for it)
  size_t map_call_limit = 0;             // non-zero: calls past it fail (EFBIG) and count as misuse
  std::function<void()> on_map;          // called after each map call that mapped

  // Calls with a handle the fakes did not hand out, or an unknown mapping.
  std::vector<std::string> misuse;
};

State& Get();
// Fresh state and a Xen() that returns the fakes.
void Reset();
// What the last test left behind: open handles, live mappings, a mapped ring, misuse.
std::vector<std::string> Leftovers();

xc_interface* Xch();
constexpr int kEvtchnFd = 99;

}  // namespace snowflock::fake
