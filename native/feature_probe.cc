#include "feature_probe.h"

#include <cerrno>
#include <cstring>

#include "probe_domain.h"
#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

// meaning_of_refusal explains the errno the feature uses for "not on this CPU/domain"
// (EOPNOTSUPP for paging and sharing; mem_access answers EINVAL without Intel EPT).
FeatureResult Refused(int err, const char* meaning_of_enosys, int refusal_errno, const char* meaning_of_refusal) {
  FeatureResult r;
  r.err = err;
  r.xen_log = TakeXenLog();
  if (err == ENOSYS) r.reason = meaning_of_enosys;
  else if (err == refusal_errno) r.reason = meaning_of_refusal;
  else if (err == ENODEV) r.reason = "needs hardware-assisted paging (HAP)";
  else r.reason = std::string("refused: ") + strerror(err);
  return r;
}

FeatureResult Available() {
  FeatureResult r;
  r.available = true;
  return r;
}

}  // namespace

FeatureReport ProbeFeatures(xc_interface* xch) {
  const XenLibs& xen = Xen();
  FeatureReport report;
  xc_physinfo_t phys = {};
  ClearXenLog();
  if (xen.xc_physinfo(xch, &phys) < 0) ThrowXenError("xc_physinfo", "");
  report.hap = phys.capabilities & XEN_SYSCTL_PHYSCAP_hap;

  ProbeDomain probe(xch, report.hap);
  uint32_t d = probe.domid();

  uint32_t port = 0;
  ClearXenLog();
  if (xen.xc_mem_paging_enable(xch, d, &port) == 0) {
    report.mem_paging = Available();
    xen.xc_mem_paging_disable(xch, d);
  } else {
    report.mem_paging = Refused(errno, "Xen built without CONFIG_MEM_PAGING (build it with scripts/testbox/build-xen.sh)",
                                EOPNOTSUPP, "the hypervisor refuses paging for this domain type");
  }

  ClearXenLog();
  if (xen.xc_memshr_control(xch, d, 1) == 0) {
    report.mem_sharing = Available();
    xen.xc_memshr_control(xch, d, 0);
  } else {
    report.mem_sharing = Refused(errno, "Xen built without CONFIG_MEM_SHARING", EOPNOTSUPP,
                                 "Xen 4.17 allows memory sharing (and VM fork) only on Intel VMX hosts");
  }

  ClearXenLog();
  if (xen.xc_set_mem_access(xch, d, XENMEM_access_rw, ProbeDomain::kRingGfn, 1) == 0) {
    report.mem_access = Available();
  } else {
    report.mem_access = Refused(errno, "Xen built without CONFIG_MEM_ACCESS", EINVAL,
                                "Xen allows mem_access only on Intel VMX with EPT; this CPU has none");
  }
  return report;
}

}  // namespace snowflock
