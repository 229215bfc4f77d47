#include "paging_hypercalls.h"

#include <cerrno>
#include <cstring>

#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

PagingHypercalls::PagingHypercalls() {
  const XenLibs& xen = Xen();
  xcall_ = xen.xencall_open(nullptr, 0);
  if (!xcall_) ThrowXenError("xencall_open", "paging hypercalls");
  calls_ = static_cast<multicall_entry_t*>(xen.xencall_alloc_buffer(xcall_, 2 * kBatch * sizeof(multicall_entry_t)));
  ops_ = static_cast<xen_mem_paging_op_t*>(xen.xencall_alloc_buffer(xcall_, 2 * kBatch * sizeof(xen_mem_paging_op_t)));
  staging_ = static_cast<uint8_t*>(xen.xencall_alloc_buffer_pages(xcall_, kBatch));
  if (!calls_ || !ops_ || !staging_) {
    int err = errno;
    Release();
    errno = err;
    ThrowXenError("xencall_alloc_buffer", "paging hypercall buffers");
  }
}

PagingHypercalls::~PagingHypercalls() { Release(); }

void PagingHypercalls::Release() {
  if (!xcall_) return;
  const XenLibs& xen = Xen();
  if (staging_) xen.xencall_free_buffer_pages(xcall_, staging_, kBatch);
  if (ops_) xen.xencall_free_buffer(xcall_, ops_);
  if (calls_) xen.xencall_free_buffer(xcall_, calls_);
  xen.xencall_close(xcall_);
  xcall_ = nullptr;
  staging_ = nullptr;
  ops_ = nullptr;
  calls_ = nullptr;
}

void PagingHypercalls::SetEntry(size_t i, uint32_t domid, uint8_t op, uint64_t gfn, uint8_t* buffer) {
  std::memset(&ops_[i], 0, sizeof ops_[i]);
  ops_[i].op = op;
  ops_[i].domain = domid_t(domid);
  ops_[i].gfn = gfn;
  if (buffer) ops_[i].buffer.p = buffer;  // libxc redefines set_xen_guest_handle for its own buffers
  std::memset(&calls_[i], 0, sizeof calls_[i]);
  calls_[i].op = __HYPERVISOR_memory_op;
  calls_[i].args[0] = XENMEM_paging_op;
  calls_[i].args[1] = reinterpret_cast<uintptr_t>(&ops_[i]);
}

void PagingHypercalls::Issue(size_t entries, const char* what, uint32_t domid) {
  if (Xen().xencall2(xcall_, __HYPERVISOR_multicall, reinterpret_cast<uintptr_t>(calls_), entries))
    ThrowXenError("multicall", std::string(what) + " for domain " + std::to_string(domid));
}

size_t PagingHypercalls::PageOut(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<uint64_t>* refused) {
  if (n > kBatch) n = kBatch;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    SetEntry(2 * i, domid, XENMEM_paging_op_nominate, gfns[i], nullptr);
    SetEntry(2 * i + 1, domid, XENMEM_paging_op_evict, gfns[i], nullptr);
  }
  Issue(2 * n, "paging out", domid);
  size_t done = 0;
  for (size_t i = 0; i < n; i++) {
    if (long(calls_[2 * i].result) == 0 && long(calls_[2 * i + 1].result) == 0)
      done++;
    else if (refused)
      refused->push_back(gfns[i]);
  }
  return done;
}

void PagingHypercalls::PageIn(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<long>* result) {
  if (n > kBatch) n = kBatch;
  result->assign(n, 0);
  if (n == 0) return;
  for (size_t i = 0; i < n; i++) SetEntry(i, domid, XENMEM_paging_op_prep, gfns[i], staging(i));
  Issue(n, "paging in", domid);
  for (size_t i = 0; i < n; i++) (*result)[i] = long(calls_[i].result);
}

}  // namespace snowflock
