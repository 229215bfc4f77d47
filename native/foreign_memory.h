// Mapping another domain's pages into dom0: an owned xenforeignmemory handle and owned
// mappings, so that no error path leaks a mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "xen_headers.h"

namespace snowflock {

class ForeignMemory;

class ForeignMapping {
 public:
  ForeignMapping() = default;
  ForeignMapping(ForeignMemory* fmem, void* addr, size_t pages, std::vector<int> errors);
  ~ForeignMapping();
  ForeignMapping(ForeignMapping&& other) noexcept;
  ForeignMapping& operator=(ForeignMapping&& other) noexcept;
  ForeignMapping(const ForeignMapping&) = delete;
  ForeignMapping& operator=(const ForeignMapping&) = delete;

  uint8_t* page(size_t i) const { return static_cast<uint8_t*>(addr_) + i * XC_PAGE_SIZE; }
  size_t pages() const { return pages_; }
  // 0 when page i is mapped; -errno for a hole (not populated) or a refusal.
  int error(size_t i) const { return errors_[i]; }

 private:
  void Release();
  ForeignMemory* fmem_ = nullptr;
  void* addr_ = nullptr;
  size_t pages_ = 0;
  std::vector<int> errors_;
};

class ForeignMemory {
 public:
  ForeignMemory();  // throws XenError
  ~ForeignMemory();
  ForeignMemory(const ForeignMemory&) = delete;
  ForeignMemory& operator=(const ForeignMemory&) = delete;

  // Maps gfns of domid. With per-page errors allowed, holes are reported in error(i)
  // instead of failing the whole call (the way to find which gfns are populated).
  ForeignMapping Map(uint32_t domid, int prot, const std::vector<xen_pfn_t>& gfns, bool allow_holes);

  xenforeignmemory_handle* get() const { return handle_; }

 private:
  xenforeignmemory_handle* handle_ = nullptr;
};

}  // namespace snowflock
