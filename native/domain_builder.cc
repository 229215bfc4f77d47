#include "domain_builder.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "build_guards.h"
#include "foreign_memory.h"
#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

uint64_t ParamOr(const BuildSpec& s, uint32_t param, uint64_t fallback) {
  for (const auto& [p, v] : s.params)
    if (p == param) return v;
  return fallback;
}

void CopyImageIntoDomain(ForeignMemory& fmem, uint32_t domid, const BuildSpec& spec, uint64_t pages) {
  FileDescriptor fd(open(spec.memory_image.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) ThrowXenError("open", spec.memory_image);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) ThrowXenError("fstat", spec.memory_image);
  if (uint64_t(st.st_size) != spec.image_offset + pages * XC_PAGE_SIZE)
    throw XenError("snowflock", "memory image " + spec.memory_image + " holds " +
                                    std::to_string((uint64_t(st.st_size) - spec.image_offset) / XC_PAGE_SIZE) +
                                    " pages, the descriptor maps " + std::to_string(pages), EINVAL, "");
  off_t offset = off_t(spec.image_offset);
  ForEachGfnBatch(spec.populated, 1024, [&](const std::vector<xen_pfn_t>& gfns) {
    ForeignMapping m = fmem.Map(domid, PROT_READ | PROT_WRITE, gfns, false);
    size_t bytes = gfns.size() * XC_PAGE_SIZE;
    for (size_t done = 0; done < bytes;) {
      ssize_t got = pread(fd.get(), m.page(0) + done, bytes - done, offset + off_t(done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) ThrowXenError("pread", spec.memory_image);
      done += size_t(got);
    }
    offset += off_t(bytes);
  });
}

}  // namespace

BuildResult BuildDomain(xc_interface* xch, const BuildSpec& spec) {
  const XenLibs& xen = Xen();
  BuildResult out;

  struct xen_domctl_createdomain config = {};
  config.flags = XEN_DOMCTL_CDF_hvm | (spec.hap ? XEN_DOMCTL_CDF_hap : 0);
  config.max_vcpus = spec.max_vcpus;
  config.max_evtchn_port = 1023;
  config.max_grant_frames = -1;
  config.max_maptrack_frames = -1;
  config.grant_opts = XEN_DOMCTL_GRANT_version(2);
  config.arch.emulation_flags = spec.emulation_flags;
  std::memcpy(config.handle, spec.handle.data(), sizeof config.handle);
  ClearXenLog();
  if (xen.xc_domain_create(xch, &out.domid, &config) < 0) ThrowXenError("xc_domain_create", "clone");
  DomainUnderConstruction domain(xch, out.domid);
  const std::string subject = domain.subject();

  // xc_domain_create only allocates the vCPU array; max_vcpus creates the vCPUs that
  // hvm_setcontext loads into (without it: "failed to load entry 2/0", EINVAL).
  if (xen.xc_domain_max_vcpus(xch, out.domid, spec.max_vcpus)) ThrowXenError("xc_domain_max_vcpus", subject);

  if (!spec.cpuid.empty() || !spec.msrs.empty()) {
    xc_cpu_policy_t* policy = xen.xc_cpu_policy_init();
    if (!policy) ThrowXenError("xc_cpu_policy_init", subject);
    int rc = xen.xc_cpu_policy_get_domain(xch, out.domid, policy);
    if (!rc && !spec.cpuid.empty()) rc = xen.xc_cpu_policy_update_cpuid(xch, policy, spec.cpuid.data(), uint32_t(spec.cpuid.size()));
    if (!rc && !spec.msrs.empty()) rc = xen.xc_cpu_policy_update_msrs(xch, policy, spec.msrs.data(), uint32_t(spec.msrs.size()));
    if (!rc) rc = xen.xc_cpu_policy_set_domain(xch, out.domid, policy);
    int err = errno;
    xen.xc_cpu_policy_destroy(policy);
    errno = err;
    if (rc) ThrowXenError("xc_cpu_policy_set_domain", subject + " (the parent's CPU policy does not fit this host)");
  }
  if (xen.xc_domain_setmaxmem(xch, out.domid, spec.max_pages * (XC_PAGE_SIZE / 1024)))
    ThrowXenError("xc_domain_setmaxmem", subject);
  if (spec.paging_pool_bytes && xen.xc_set_paging_mempool_size(xch, out.domid, spec.paging_pool_bytes))
    ThrowXenError("xc_set_paging_mempool_size", subject);
  if (xen.xc_domain_set_tsc_info(xch, out.domid, spec.tsc_mode, spec.elapsed_nsec, spec.gtsc_khz, spec.incarnation))
    ThrowXenError("xc_domain_set_tsc_info", subject);

  std::vector<xen_pfn_t> gfns;
  for (const GfnRange& r : spec.populated)
    for (uint64_t g = r.start; g < r.start + r.count; g++) gfns.push_back(g);
  out.pages = gfns.size();
  // Xen may stop a populate early and report how far it got; carry on from there. Only a
  // call that makes no progress at all is a failure (normally: the host is out of memory).
  constexpr size_t kPopulateBatch = 8192;
  for (size_t i = 0; i < gfns.size();) {
    size_t n = std::min(kPopulateBatch, gfns.size() - i);
    ClearXenLog();
    int done = xen.xc_domain_populate_physmap(xch, out.domid, n, 0, 0, &gfns[i]);
    if (done < 0) ThrowXenError("xc_domain_populate_physmap", subject + ", " + std::to_string(n) + " pages at gfn " + std::to_string(gfns[i]));
    if (done == 0) {
      std::string log = TakeXenLog();
      xc_domaininfo_t now{};
      xc_physinfo_t phys{};
      xen.xc_domain_getinfolist(xch, out.domid, 1, &now);
      xen.xc_physinfo(xch, &phys);
      // Xen keeps a reserve it will not hand out, so "free" can exceed what is allocatable.
      bool out_of_memory = phys.free_pages < gfns.size() - i + 65536;
      throw XenError("xc_domain_populate_physmap",
                     subject + ": no progress at gfn " + std::to_string(gfns[i]) + " (" + std::to_string(now.tot_pages) + " of " +
                         std::to_string(gfns.size()) + " pages populated, host has " + std::to_string(phys.free_pages) +
                         " free pages)" + (out_of_memory ? ": the host ran out of free memory" : ""),
                     out_of_memory ? ENOMEM : EBUSY, log);
    }
    if (size_t(done) < n) out.partial_populates++;
    i += size_t(done);
  }
  gfns.clear();
  gfns.shrink_to_fit();

  ForeignMemory fmem;
  if (!spec.memory_image.empty()) CopyImageIntoDomain(fmem, out.domid, spec, out.pages);
  for (const SpecialPage& p : spec.special) {
    ForeignMapping m = fmem.Map(out.domid, PROT_READ | PROT_WRITE, {xen_pfn_t(p.gfn)}, false);
    std::memcpy(m.page(0), p.data.data(), std::min<size_t>(p.data.size(), XC_PAGE_SIZE));
  }

  // Params before context, in the order Xen's own fork uses.
  for (const auto& [param, value] : spec.params) {
    if (xen.xc_hvm_param_set(xch, out.domid, param, value))
      ThrowXenError("xc_hvm_param_set", subject + " param " + std::to_string(param));
  }
  std::vector<uint8_t> context = spec.hvm_context;
  if (xen.xc_domain_hvm_setcontext(xch, out.domid, context.data(), uint32_t(context.size())))
    ThrowXenError("xc_domain_hvm_setcontext", subject);

  // The resuming kernel rebinds xenstore and console to the port numbers it remembers:
  // allocate unbound ports (remote dom0) until those numbers exist.
  out.store_port = uint32_t(ParamOr(spec, HVM_PARAM_STORE_EVTCHN, 0));
  out.console_port = uint32_t(ParamOr(spec, HVM_PARAM_CONSOLE_EVTCHN, 0));
  out.store_gfn = ParamOr(spec, HVM_PARAM_STORE_PFN, 0);
  out.console_gfn = ParamOr(spec, HVM_PARAM_CONSOLE_PFN, 0);
  uint32_t highest = std::max(out.store_port, out.console_port);
  for (int port = 0; port >= 0 && uint32_t(port) < highest;) {
    port = xen.xc_evtchn_alloc_unbound(xch, out.domid, 0);
    if (port < 0) ThrowXenError("xc_evtchn_alloc_unbound", subject);
  }
  if (xen.xc_dom_gnttab_seed(xch, out.domid, true, out.console_gfn, out.store_gfn, 0, 0))
    ThrowXenError("xc_dom_gnttab_seed", subject);

  domain.Commit();
  return out;
}

}  // namespace snowflock
