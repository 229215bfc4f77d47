#include "domains.h"

#include <cerrno>
#include <cstdio>
#include <string>

#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

std::string Subject(uint32_t domid) { return "domain " + std::to_string(domid); }

// xl's state column: running, blocked, paused, shutdown, crashed, dying.
std::string StateString(uint32_t flags) {
  uint32_t reason = (flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
  bool shutdown = flags & XEN_DOMINF_shutdown;
  std::string s = "------";
  if (flags & XEN_DOMINF_running) s[0] = 'r';
  if (flags & XEN_DOMINF_blocked) s[1] = 'b';
  if (flags & XEN_DOMINF_paused) s[2] = 'p';
  if (shutdown && reason != SHUTDOWN_crash) s[3] = 's';
  if (shutdown && reason == SHUTDOWN_crash) s[4] = 'c';
  if (flags & XEN_DOMINF_dying) s[5] = 'd';
  return s;
}

const char* ShutdownReason(uint32_t reason) {
  switch (reason) {
    case SHUTDOWN_poweroff: return "poweroff";
    case SHUTDOWN_reboot: return "reboot";
    case SHUTDOWN_suspend: return "suspend";
    case SHUTDOWN_crash: return "crash";
    case SHUTDOWN_watchdog: return "watchdog";
    case SHUTDOWN_soft_reset: return "soft_reset";
    default: return "unknown";
  }
}

// HVM and PVH are both "hvm_guest" to Xen; PVH has no emulated platform beyond the LAPIC.
const char* DomainType(const xc_domaininfo_t& info) {
  if (!(info.flags & XEN_DOMINF_hvm_guest)) return "pv";
  return (info.arch_config.emulation_flags & ~XEN_X86_EMU_LAPIC) ? "hvm" : "pvh";
}

std::string Uuid(const xen_domain_handle_t handle) {
  char buf[37];
  snprintf(buf, sizeof buf, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           handle[0], handle[1], handle[2], handle[3], handle[4], handle[5], handle[6], handle[7],
           handle[8], handle[9], handle[10], handle[11], handle[12], handle[13], handle[14], handle[15]);
  return buf;
}

}  // namespace

std::vector<xc_domaininfo_t> ListDomains(xc_interface* xch) {
  const XenLibs& xen = Xen();
  std::vector<xc_domaininfo_t> all;
  uint32_t next = 0;
  constexpr unsigned kBatch = 256;
  for (;;) {
    std::vector<xc_domaininfo_t> batch(kBatch);
    ClearXenLog();
    int n = xen.xc_domain_getinfolist(xch, next, kBatch, batch.data());
    if (n < 0) ThrowXenError("xc_domain_getinfolist", "from domain " + std::to_string(next));
    all.insert(all.end(), batch.begin(), batch.begin() + n);
    if (n < int(kBatch)) return all;
    next = batch[n - 1].domain + 1;
  }
}

xc_domaininfo_t DomainInfo(xc_interface* xch, uint32_t domid) {
  xc_domaininfo_t info = {};
  ClearXenLog();
  int n = Xen().xc_domain_getinfolist(xch, domid, 1, &info);
  if (n < 0) ThrowXenError("xc_domain_getinfolist", Subject(domid));
  if (n == 0 || info.domain != domid) throw XenError("xc_domain_getinfolist", Subject(domid), ESRCH, "no such domain");
  return info;
}

Napi::Object DomainToJs(Napi::Env env, const xc_domaininfo_t& info) {
  Napi::Object d = Napi::Object::New(env);
  d.Set("domid", info.domain);
  d.Set("type", DomainType(info));
  d.Set("state", StateString(info.flags));
  d.Set("flags", info.flags);
  d.Set("dying", bool(info.flags & XEN_DOMINF_dying));
  d.Set("paused", bool(info.flags & XEN_DOMINF_paused));
  d.Set("running", bool(info.flags & XEN_DOMINF_running));
  d.Set("blocked", bool(info.flags & XEN_DOMINF_blocked));
  d.Set("hap", bool(info.flags & XEN_DOMINF_hap));
  if (info.flags & XEN_DOMINF_shutdown)
    d.Set("shutdownReason", ShutdownReason((info.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask));
  d.Set("totPages", double(info.tot_pages));
  d.Set("maxPages", double(info.max_pages));
  d.Set("sharedPages", double(info.shr_pages));
  d.Set("pagedPages", double(info.paged_pages));
  d.Set("cpuTimeNs", double(info.cpu_time));
  d.Set("onlineVcpus", info.nr_online_vcpus);
  d.Set("maxVcpuId", info.max_vcpu_id == XEN_INVALID_MAX_VCPU_ID ? -1 : double(info.max_vcpu_id));
  d.Set("uuid", Uuid(info.handle));
  d.Set("emulationFlags", info.arch_config.emulation_flags);
  return d;
}

void PauseDomain(xc_interface* xch, uint32_t domid) {
  ClearXenLog();
  if (Xen().xc_domain_pause(xch, domid) < 0) ThrowXenError("xc_domain_pause", Subject(domid));
}

void UnpauseDomain(xc_interface* xch, uint32_t domid) {
  ClearXenLog();
  if (Xen().xc_domain_unpause(xch, domid) < 0) ThrowXenError("xc_domain_unpause", Subject(domid));
}

void DestroyDomain(xc_interface* xch, uint32_t domid) {
  ClearXenLog();
  if (Xen().xc_domain_destroy(xch, domid) < 0) ThrowXenError("xc_domain_destroy", Subject(domid));
}

}  // namespace snowflock
