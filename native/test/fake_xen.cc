#include "fake_xen.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>

namespace snowflock::fake {

namespace {

State state;

// Tokens whose addresses stand for the opaque handles.
char xch_token, evtchn_token, fmem_token;
xenevtchn_handle* const kEvtchn = reinterpret_cast<xenevtchn_handle*>(&evtchn_token);
xenforeignmemory_handle* const kFmem = reinterpret_cast<xenforeignmemory_handle*>(&fmem_token);
xentoollog_logger* fmem_logger = nullptr;

struct LiveMapping {
  size_t pages;
  std::vector<uint64_t> gfns;
  std::vector<int> errors;
};
std::map<void*, LiveMapping> live_mappings;

bool IsMapped(void* page) {
  unsigned char resident;
  return mincore(page, XC_PAGE_SIZE, &resident) == 0 || errno != ENOMEM;
}

void Misuse(const char* call, const char* what) { state.misuse.push_back(std::string(call) + ": " + what); }

int Fail(int err) {
  errno = err;
  return -1;
}

void Log(xentoollog_logger* logger, const char* context, const char* format, ...) {
  va_list al;
  va_start(al, format);
  logger->vmessage(logger, XTL_ERROR, -1, context, format, al);
  va_end(al);
}

// libxenctrl

void* MonitorEnable(xc_interface* xch, uint32_t domid, uint32_t* port) {
  if (xch != Xch()) Misuse("xc_monitor_enable", "unknown xc_interface");
  if (state.monitor_enable_errno) {
    errno = state.monitor_enable_errno;
    return nullptr;
  }
  // Like libxc: a fresh mapping of the ring page, which the caller munmaps.
  void* page = mmap(nullptr, XC_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return nullptr;
  state.ring = page;
  state.monitor_enabled.push_back(domid);
  *port = state.monitor_port;
  return page;
}

int MonitorDisable(xc_interface* xch, uint32_t domid) {
  if (xch != Xch()) Misuse("xc_monitor_disable", "unknown xc_interface");
  state.monitor_disabled.push_back(domid);
  return 0;
}

int SetMemAccess(xc_interface* xch, uint32_t domid, xenmem_access_t access, uint64_t first_gfn, uint32_t count) {
  if (xch != Xch()) Misuse("xc_set_mem_access", "unknown xc_interface");
  state.mem_access_calls.push_back({domid, access, first_gfn, count});
  if (state.mem_access_calls.size() == state.mem_access_fail_call) return Fail(state.mem_access_errno);
  return 0;
}

// libxenevtchn

xenevtchn_handle* EvtchnOpen(xentoollog_logger*, unsigned) {
  state.evtchn_opened++;
  return kEvtchn;
}

int EvtchnClose(xenevtchn_handle* h) {
  if (h != kEvtchn) Misuse("xenevtchn_close", "unknown handle");
  state.evtchn_closed++;
  return 0;
}

int EvtchnFd(xenevtchn_handle* h) {
  if (h != kEvtchn) Misuse("xenevtchn_fd", "unknown handle");
  return kEvtchnFd;
}

xenevtchn_port_or_error_t EvtchnBindInterdomain(xenevtchn_handle* h, uint32_t domid, evtchn_port_t remote_port) {
  if (h != kEvtchn) Misuse("xenevtchn_bind_interdomain", "unknown handle");
  if (state.bind_errno) return Fail(state.bind_errno);
  state.bound.emplace_back(domid, remote_port);
  return state.local_port;
}

int EvtchnUnbind(xenevtchn_handle* h, evtchn_port_t port) {
  if (h != kEvtchn) Misuse("xenevtchn_unbind", "unknown handle");
  state.unbound.push_back(int(port));
  return 0;
}

xenevtchn_port_or_error_t EvtchnPending(xenevtchn_handle* h) {
  if (h != kEvtchn) Misuse("xenevtchn_pending", "unknown handle");
  int port = state.pending_port;
  state.pending_port = -1;
  return port >= 0 ? port : Fail(EAGAIN);
}

int EvtchnUnmask(xenevtchn_handle* h, evtchn_port_t port) {
  if (h != kEvtchn) Misuse("xenevtchn_unmask", "unknown handle");
  state.unmasked.push_back(int(port));
  return 0;
}

int EvtchnNotify(xenevtchn_handle* h, evtchn_port_t port) {
  if (h != kEvtchn) Misuse("xenevtchn_notify", "unknown handle");
  state.notified.push_back(int(port));
  return 0;
}

// libxenforeignmemory: a mapping starts as a copy of the guest's pages and is written back
// to them (the pages that mapped) on unmap.

xenforeignmemory_handle* FmemOpen(xentoollog_logger* logger, unsigned) {
  state.fmem_opened++;
  fmem_logger = logger;
  return kFmem;
}

int FmemClose(xenforeignmemory_handle* h) {
  if (h != kFmem) Misuse("xenforeignmemory_close", "unknown handle");
  state.fmem_closed++;
  return 0;
}

void* FmemMap(xenforeignmemory_handle* h, uint32_t domid, int prot, size_t pages, const xen_pfn_t gfns[], int err[]) {
  if (h != kFmem) Misuse("xenforeignmemory_map", "unknown handle");
  state.map_calls.push_back({domid, prot, std::vector<uint64_t>(gfns, gfns + pages)});
  if (state.map_call_limit && state.map_calls.size() > state.map_call_limit) {
    // A runaway walk: stop it here rather than map for hours.
    if (state.map_calls.size() == state.map_call_limit + 1) Misuse("xenforeignmemory_map", "more calls than the test allows");
    errno = EFBIG;
    return nullptr;
  }
  if (state.map_errno) {
    if (fmem_logger && !state.map_log.empty()) Log(fmem_logger, "xenforeignmemory", "%s", state.map_log.c_str());
    errno = state.map_errno;
    return nullptr;
  }
  void* addr = mmap(nullptr, pages * XC_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (addr == MAP_FAILED) return nullptr;
  LiveMapping m{pages, std::vector<uint64_t>(gfns, gfns + pages), std::vector<int>(pages, 0)};
  for (size_t i = 0; i < pages; i++) {
    auto refused = state.page_errno.find(gfns[i]);
    if (refused != state.page_errno.end()) m.errors[i] = -refused->second;  // privcmd reports -errno
    else if (state.hole && state.hole(gfns[i])) m.errors[i] = -ENOENT;
    auto page = state.guest.find(gfns[i]);
    if (!m.errors[i] && page != state.guest.end())
      std::memcpy(static_cast<uint8_t*>(addr) + i * XC_PAGE_SIZE, page->second.data(), XC_PAGE_SIZE);
    if (err) err[i] = m.errors[i];
  }
  live_mappings[addr] = std::move(m);
  if (state.on_map) state.on_map();
  return addr;
}

int FmemUnmap(xenforeignmemory_handle* h, void* addr, size_t pages) {
  if (h != kFmem) Misuse("xenforeignmemory_unmap", "unknown handle");
  auto it = live_mappings.find(addr);
  if (it == live_mappings.end() || it->second.pages != pages) {
    Misuse("xenforeignmemory_unmap", "not a mapping of this size");
    return Fail(EINVAL);
  }
  const LiveMapping& m = it->second;
  for (size_t i = 0; i < pages; i++) {
    if (m.errors[i]) continue;
    const uint8_t* page = static_cast<const uint8_t*>(addr) + i * XC_PAGE_SIZE;
    state.guest[m.gfns[i]].assign(page, page + XC_PAGE_SIZE);
  }
  munmap(addr, pages * XC_PAGE_SIZE);
  live_mappings.erase(it);
  return 0;
}

}  // namespace

std::ostream& operator<<(std::ostream& out, const MemAccessCall& c) {
  return out << "{domid " << c.domid << ", access " << int(c.access) << ", gfn " << c.first_gfn << ", count " << c.count << "}";
}

State& Get() { return state; }

xc_interface* Xch() { return reinterpret_cast<xc_interface*>(&xch_token); }

void Reset() {
  for (auto& [addr, m] : live_mappings) munmap(addr, m.pages * XC_PAGE_SIZE);
  live_mappings.clear();
  fmem_logger = nullptr;
  state = State{};

  // Entry points outside the backend path stay null: a call to one crashes the test loudly.
  XenLibs libs;
  libs.xc_monitor_enable = MonitorEnable;
  libs.xc_monitor_disable = MonitorDisable;
  libs.xc_set_mem_access = SetMemAccess;
  libs.xenevtchn_open = EvtchnOpen;
  libs.xenevtchn_close = EvtchnClose;
  libs.xenevtchn_fd = EvtchnFd;
  libs.xenevtchn_bind_interdomain = EvtchnBindInterdomain;
  libs.xenevtchn_unbind = EvtchnUnbind;
  libs.xenevtchn_pending = EvtchnPending;
  libs.xenevtchn_unmask = EvtchnUnmask;
  libs.xenevtchn_notify = EvtchnNotify;
  libs.xenforeignmemory_open = FmemOpen;
  libs.xenforeignmemory_close = FmemClose;
  libs.xenforeignmemory_map = FmemMap;
  libs.xenforeignmemory_unmap = FmemUnmap;
  OverrideXenLibsForTest(libs);
}

std::vector<std::string> Leftovers() {
  std::vector<std::string> out = state.misuse;
  if (state.evtchn_opened != state.evtchn_closed) out.push_back("an event channel handle was left open");
  if (state.fmem_opened != state.fmem_closed) out.push_back("a foreign memory handle was left open");
  if (!live_mappings.empty()) out.push_back(std::to_string(live_mappings.size()) + " foreign mapping(s) left mapped");
  if (state.ring && IsMapped(state.ring)) {
    out.push_back("the monitor ring page was left mapped");
    munmap(state.ring, XC_PAGE_SIZE);
  }
  if (state.monitor_enabled.size() != state.monitor_disabled.size()) out.push_back("the monitor was left enabled");
  return out;
}

}  // namespace snowflock::fake
