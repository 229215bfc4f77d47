// mem_access: for hosts running stock Xen (no CONFIG_MEM_PAGING) on Intel EPT. The clone's
// pages stay populated (zero) but are restricted to no access over whole runs; a touch is a
// monitor-ring event; the fetched page is written through a foreign mapping and its access
// lifted. Xen 4.17 offers mem_access on Intel only (EINVAL on AMD), and its monitor ring page
// is taken out of the physmap by libxc, so this backend has no ring takeover.
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "fault_backend.h"
#include "foreign_memory.h"
#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

// Calls fn(first, count) for each run of consecutive gfns in the list.
template <typename Fn>
void ForEachRun(const uint64_t* gfns, size_t n, Fn&& fn) {
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && gfns[j] == gfns[j - 1] + 1) j++;
    fn(i, j - i);
    i = j;
  }
}

class AccessBackend : public FaultBackend {
 public:
  AccessBackend(xc_interface* xch, uint32_t domid) : xch_(xch), domid_(domid), staging_(kBatch * XC_PAGE_SIZE) {
    const XenLibs& xen = Xen();
    const std::string subject = "domain " + std::to_string(domid);
    ClearXenLog();
    ring_ = xen.xc_monitor_enable(xch, domid, &xen_port_);
    if (!ring_) ThrowXenError("xc_monitor_enable", subject);
    try {
      channel_ = std::make_unique<VmEventChannel>(domid, ring_, xen_port_, "monitor");
    } catch (...) {
      Close();
      throw;
    }
  }
  ~AccessBackend() override {
    channel_.reset();
    Close();
  }

  const char* name() const override { return "access"; }
  uint32_t xen_port() const override { return 0; }
  uint64_t ring_gfn() const override { return 0; }

  bool FaultGfn(const vm_event_request_t& r, uint64_t* gfn) const override {
    if (r.reason != VM_EVENT_REASON_MEM_ACCESS) return false;
    *gfn = r.u.mem_access.gfn;
    return true;
  }

  size_t Remove(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<uint64_t>* refused) override {
    size_t done = 0;
    ForEachRun(gfns, n, [&](size_t first, size_t count) {
      ClearXenLog();
      if (Xen().xc_set_mem_access(xch_, domid, XENMEM_access_n, gfns[first], uint32_t(count)) == 0) {
        done += count;
      } else if (errno == EINVAL && first == 0 && done == 0) {
        ThrowXenError("xc_set_mem_access", "domain " + std::to_string(domid) + " (Xen 4.17 offers mem_access on Intel EPT only)");
      } else if (refused) {
        refused->insert(refused->end(), gfns + first, gfns + first + count);
      }
    });
    return done;
  }

  uint8_t* staging(size_t i) override { return staging_.data() + i * XC_PAGE_SIZE; }

  void Install(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<long>* result) override {
    result->assign(n, 0);
    // A privileged foreign mapping is not subject to the guest's p2m access restriction.
    std::vector<xen_pfn_t> pfns(gfns, gfns + n);
    ForeignMapping m = fmem_.Map(domid, PROT_READ | PROT_WRITE, pfns, true);
    for (size_t i = 0; i < n; i++) {
      if (m.error(i)) (*result)[i] = m.error(i);
      else std::memcpy(m.page(i), staging(i), XC_PAGE_SIZE);
    }
    // Lift the restriction only where the page was written: a page that did not map stays
    // restricted, so the guest faults on it again instead of reading the zeros under it.
    std::vector<uint64_t> written;
    std::vector<size_t> index;
    for (size_t i = 0; i < n; i++)
      if ((*result)[i] == 0) written.push_back(gfns[i]), index.push_back(i);
    ForEachRun(written.data(), written.size(), [&](size_t first, size_t count) {
      if (Xen().xc_set_mem_access(xch_, domid, XENMEM_access_rwx, written[first], uint32_t(count)))
        for (size_t k = first; k < first + count; k++) (*result)[index[k]] = -errno;
    });
  }

  void Detach(uint32_t) override {
    channel_.reset();
    Close();
  }

 private:
  void Close() {
    if (ring_) munmap(ring_, XC_PAGE_SIZE);
    ring_ = nullptr;
    Xen().xc_monitor_disable(xch_, domid_);
  }

  xc_interface* xch_;
  uint32_t domid_;
  uint32_t xen_port_ = 0;
  void* ring_ = nullptr;
  ForeignMemory fmem_;
  std::vector<uint8_t> staging_;
};

}  // namespace

std::unique_ptr<FaultBackend> OpenAccessBackend(xc_interface* xch, uint32_t domid) {
  return std::make_unique<AccessBackend>(xch, domid);
}

}  // namespace snowflock
