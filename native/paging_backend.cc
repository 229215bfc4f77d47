// mem_paging: the clone's pages are paged out (nominate + evict) and come back with
// XENMEM_paging_op_prep, both batched through multicall (paging_hypercalls.h). The ring page is
// taken out of the clone's physmap once mapped, as Xen's own tools do: a guest that could write
// it would forge requests and responses. A memtap that takes over after one ended cannot map the
// old ring, so it disables it and enables a fresh one with the domain paused (a fault with no
// ring in place crashes the domain); vcpus that waited on the old ring are unpaused by Xen, fault
// again, and their requests come on the new ring.
#include <sys/mman.h>

#include <cerrno>
#include <string>

#include "fault_backend.h"
#include "foreign_memory.h"
#include "paging_hypercalls.h"
#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

// Pauses a domain for a scope; the pause count is Xen's, so other pausers are unaffected.
class ScopedPause {
 public:
  ScopedPause(xc_interface* xch, uint32_t domid) : xch_(xch), domid_(domid) {
    if (Xen().xc_domain_pause(xch, domid)) ThrowXenError("xc_domain_pause", "domain " + std::to_string(domid) + " (ring takeover)");
  }
  ~ScopedPause() { Xen().xc_domain_unpause(xch_, domid_); }
  ScopedPause(const ScopedPause&) = delete;
  ScopedPause& operator=(const ScopedPause&) = delete;

 private:
  xc_interface* xch_;
  uint32_t domid_;
};

class PagingBackend : public FaultBackend {
 public:
  PagingBackend(xc_interface* xch, uint32_t domid, bool takeover) : xch_(xch) {
    const XenLibs& xen = Xen();
    const std::string subject = "domain " + std::to_string(domid);
    if (xen.xc_hvm_param_get(xch, domid, HVM_PARAM_PAGING_RING_PFN, &ring_gfn_) || ring_gfn_ == 0)
      throw XenError("xc_hvm_param_get", subject + " has no paging ring page (HVM_PARAM_PAGING_RING_PFN)", ENOENT, "");
    if (!takeover) {
      Enable(domid, subject);
      return;
    }
    ScopedPause pause(xch, domid);
    ClearXenLog();
    if (xen.xc_mem_paging_disable(xch, domid) && errno != ENODEV)
      ThrowXenError("xc_mem_paging_disable", subject + " (taking over the ring of a memtap that ended)");
    // The old ring page left the physmap when it was enabled: give the gfn a page again.
    xen_pfn_t ring = xen_pfn_t(ring_gfn_);
    if (xen.xc_domain_populate_physmap_exact(xch, domid, 1, 0, 0, &ring))
      ThrowXenError("xc_domain_populate_physmap_exact", subject + " paging ring gfn " + std::to_string(ring_gfn_));
    Enable(domid, subject);
  }

  const char* name() const override { return "paging"; }
  uint32_t xen_port() const override { return xen_port_; }
  uint64_t ring_gfn() const override { return ring_gfn_; }

  bool FaultGfn(const vm_event_request_t& r, uint64_t* gfn) const override {
    if (r.reason != VM_EVENT_REASON_MEM_PAGING || (r.u.mem_paging.flags & MEM_PAGING_DROP_PAGE)) return false;
    *gfn = r.u.mem_paging.gfn;
    return true;
  }
  size_t Remove(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<uint64_t>* refused) override {
    return calls_.PageOut(domid, gfns, n, refused);
  }
  uint8_t* staging(size_t i) override { return calls_.staging(i); }
  void Install(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<long>* result) override {
    calls_.PageIn(domid, gfns, n, result);
    // prep refuses a gfn that is no longer paged out with ENOENT: a racing request put it in.
    for (long& r : *result)
      if (r == -ENOENT) r = 0;
  }
  void Detach(uint32_t domid) override {
    channel_.reset();
    ClearXenLog();
    if (Xen().xc_mem_paging_disable(xch_, domid)) ThrowXenError("xc_mem_paging_disable", "domain " + std::to_string(domid));
    ring_ = ForeignMapping();
    xen_port_ = 0;
  }

 private:
  // Maps the ring, enables paging on it, then takes the page out of the physmap: the mapping
  // keeps it alive for Xen and this process, and the guest can no longer reach it.
  void Enable(uint32_t domid, const std::string& subject) {
    const XenLibs& xen = Xen();
    ring_ = fmem_.Map(domid, PROT_READ | PROT_WRITE, {xen_pfn_t(ring_gfn_)}, false);
    ClearXenLog();
    if (xen.xc_mem_paging_enable(xch_, domid, &xen_port_)) {
      if (errno == EBUSY) throw XenError("xc_mem_paging_enable", subject + " already has a paging listener", EBUSY, TakeXenLog());
      ThrowXenError("xc_mem_paging_enable", subject + " (this Xen needs CONFIG_MEM_PAGING: `snowflock doctor` says)");
    }
    channel_ = std::make_unique<VmEventChannel>(domid, ring_.page(0), xen_port_, "paging");
    xen_pfn_t ring = xen_pfn_t(ring_gfn_);
    if (xen.xc_domain_decrease_reservation_exact(xch_, domid, 1, 0, &ring)) {
      int err = errno;
      channel_.reset();
      xen.xc_mem_paging_disable(xch_, domid);
      errno = err;
      ThrowXenError("xc_domain_decrease_reservation_exact", subject + " paging ring page (taking it out of the guest's reach)");
    }
  }

  xc_interface* xch_;
  uint32_t xen_port_ = 0;
  uint64_t ring_gfn_ = 0;
  ForeignMemory fmem_;
  ForeignMapping ring_;
  PagingHypercalls calls_;
};

}  // namespace

std::unique_ptr<FaultBackend> OpenPagingBackend(xc_interface* xch, uint32_t domid, bool takeover) {
  return std::make_unique<PagingBackend>(xch, domid, takeover);
}

}  // namespace snowflock
