#include "probe_domain.h"

#include <string>

#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

ProbeDomain::ProbeDomain(xc_interface* xch, bool hap) : xch_(xch) {
  const XenLibs& xen = Xen();
  struct xen_domctl_createdomain config = {};
  config.flags = XEN_DOMCTL_CDF_hvm | (hap ? XEN_DOMCTL_CDF_hap : 0);
  config.max_vcpus = 1;
  config.max_evtchn_port = 1023;
  config.max_grant_frames = -1;
  config.max_maptrack_frames = -1;
  config.grant_opts = XEN_DOMCTL_GRANT_version(1);
  config.arch.emulation_flags = XEN_X86_EMU_LAPIC;

  ClearXenLog();
  if (xen.xc_domain_create(xch_, &domid_, &config) < 0) ThrowXenError("xc_domain_create", "probe domain");
  created_ = true;
  std::string subject = "probe domain " + std::to_string(domid_);
  // From here a throw unwinds through the destructor, which destroys the domain.
  try {
    if (xen.xc_domain_max_vcpus(xch_, domid_, 1) < 0) ThrowXenError("xc_domain_max_vcpus", subject);
    if (xen.xc_domain_setmaxmem(xch_, domid_, 1024) < 0) ThrowXenError("xc_domain_setmaxmem", subject);
    xen_pfn_t gfn = kRingGfn;
    if (xen.xc_domain_populate_physmap_exact(xch_, domid_, 1, 0, 0, &gfn) < 0)
      ThrowXenError("xc_domain_populate_physmap_exact", subject);
    if (xen.xc_hvm_param_set(xch_, domid_, HVM_PARAM_PAGING_RING_PFN, kRingGfn) < 0)
      ThrowXenError("xc_hvm_param_set", subject + " HVM_PARAM_PAGING_RING_PFN");
  } catch (...) {
    Destroy();
    throw;
  }
}

ProbeDomain::~ProbeDomain() { Destroy(); }

void ProbeDomain::Destroy() {
  if (created_) Xen().xc_domain_destroy(xch_, domid_);
  created_ = false;
}

}  // namespace snowflock
