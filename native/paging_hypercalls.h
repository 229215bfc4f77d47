// Paging operations issued in batches through one __HYPERVISOR_multicall each, from
// hypercall buffers allocated once. One libxc call per page costs ~14x more (bounce
// buffers and a hypercall each), which would make paging out a whole clone slower than
// restoring it eagerly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "xen_headers.h"

namespace snowflock {

class PagingHypercalls {
 public:
  // Pages per multicall: each page-out is two entries (nominate, evict).
  static constexpr size_t kBatch = 128;

  PagingHypercalls();  // throws XenError
  ~PagingHypercalls();
  PagingHypercalls(const PagingHypercalls&) = delete;
  PagingHypercalls& operator=(const PagingHypercalls&) = delete;

  // Nominates and evicts up to kBatch gfns; returns how many were paged out. The gfns that
  // Xen refused (not pageable, already paged) are appended to `refused`.
  size_t PageOut(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<uint64_t>* refused);

  // Staging area for PageIn: page i of the next batch is copied here first (hypercall-safe memory).
  uint8_t* staging(size_t i) const { return staging_ + i * XC_PAGE_SIZE; }

  // Loads up to kBatch gfns from staging(0..n-1) with XENMEM_paging_op_prep; result[i] is 0
  // or Xen's -errno for that page (e.g. the page is no longer paged out).
  void PageIn(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<long>* result);

 private:
  void Release();
  void Issue(size_t entries, const char* what, uint32_t domid);
  void SetEntry(size_t i, uint32_t domid, uint8_t op, uint64_t gfn, uint8_t* buffer);

  xencall_handle* xcall_ = nullptr;
  multicall_entry_t* calls_ = nullptr;
  xen_mem_paging_op_t* ops_ = nullptr;
  uint8_t* staging_ = nullptr;
};

}  // namespace snowflock
