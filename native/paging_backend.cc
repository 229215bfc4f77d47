// mem_paging: the clone's pages are paged out (nominate + evict) and come back with
// XENMEM_paging_op_prep, both batched through multicall (paging_hypercalls.h). The ring page
// stays in the clone's physmap (at HVM_PARAM_PAGING_RING_PFN, above guest RAM) so that a
// memtap started after this one ended can map it again and take over.
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

class PagingBackend : public FaultBackend {
 public:
  PagingBackend(xc_interface* xch, uint32_t domid, bool takeover, uint32_t xen_port) : xch_(xch) {
    const XenLibs& xen = Xen();
    const std::string subject = "domain " + std::to_string(domid);
    if (xen.xc_hvm_param_get(xch, domid, HVM_PARAM_PAGING_RING_PFN, &ring_gfn_) || ring_gfn_ == 0)
      throw XenError("xc_hvm_param_get", subject + " has no paging ring page (HVM_PARAM_PAGING_RING_PFN)", ENOENT, "");
    ring_ = fmem_.Map(domid, PROT_READ | PROT_WRITE, {xen_pfn_t(ring_gfn_)}, false);
    if (takeover) {
      xen_port_ = xen_port;
    } else {
      ClearXenLog();
      if (xen.xc_mem_paging_enable(xch, domid, &xen_port_)) {
        if (errno == EBUSY) throw XenError("xc_mem_paging_enable", subject + " already has a paging listener", EBUSY, TakeXenLog());
        ThrowXenError("xc_mem_paging_enable", subject + " (this Xen needs CONFIG_MEM_PAGING: `snowflock doctor` says)");
      }
    }
    channel_ = std::make_unique<VmEventChannel>(domid, ring_.page(0), xen_port_, !takeover, "paging");
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
    const XenLibs& xen = Xen();
    const std::string subject = "domain " + std::to_string(domid);
    channel_.reset();
    ClearXenLog();
    if (xen.xc_mem_paging_disable(xch_, domid)) ThrowXenError("xc_mem_paging_disable", subject);
    ring_ = ForeignMapping();
    xen_pfn_t ring = xen_pfn_t(ring_gfn_);
    if (xen.xc_domain_decrease_reservation_exact(xch_, domid, 1, 0, &ring))
      ThrowXenError("xc_domain_decrease_reservation_exact", subject + " paging ring page");
    xen_port_ = 0;
  }

 private:
  xc_interface* xch_;
  uint32_t xen_port_ = 0;
  uint64_t ring_gfn_ = 0;
  ForeignMemory fmem_;
  ForeignMapping ring_;
  PagingHypercalls calls_;
};

}  // namespace

std::unique_ptr<FaultBackend> OpenPagingBackend(xc_interface* xch, uint32_t domid, bool takeover, uint32_t xen_port) {
  return std::make_unique<PagingBackend>(xch, domid, takeover, xen_port);
}

}  // namespace snowflock
