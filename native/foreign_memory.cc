#include "foreign_memory.h"

#include <cerrno>
#include <string>
#include <utility>

#include "xen_error.h"
#include "xen_libs.h"
#include "xen_logger.h"

namespace snowflock {

ForeignMapping::ForeignMapping(ForeignMemory* fmem, void* addr, size_t pages, std::vector<int> errors)
    : fmem_(fmem), addr_(addr), pages_(pages), errors_(std::move(errors)) {}

ForeignMapping::~ForeignMapping() { Release(); }

ForeignMapping::ForeignMapping(ForeignMapping&& other) noexcept { *this = std::move(other); }

ForeignMapping& ForeignMapping::operator=(ForeignMapping&& other) noexcept {
  if (this != &other) {
    Release();
    fmem_ = std::exchange(other.fmem_, nullptr);
    addr_ = std::exchange(other.addr_, nullptr);
    pages_ = std::exchange(other.pages_, 0);
    errors_ = std::move(other.errors_);
  }
  return *this;
}

void ForeignMapping::Release() {
  if (addr_ && fmem_) Xen().xenforeignmemory_unmap(fmem_->get(), addr_, pages_);
  addr_ = nullptr;
}

ForeignMemory::ForeignMemory() {
  ClearXenLog();
  handle_ = Xen().xenforeignmemory_open(CapturingLogger(), 0);
  if (!handle_) ThrowXenError("xenforeignmemory_open", "");
}

ForeignMemory::~ForeignMemory() {
  if (handle_) Xen().xenforeignmemory_close(handle_);
}

ForeignMapping ForeignMemory::Map(uint32_t domid, int prot, const std::vector<xen_pfn_t>& gfns, bool allow_holes) {
  std::vector<int> errors(gfns.size(), 0);
  ClearXenLog();
  void* addr = Xen().xenforeignmemory_map(handle_, domid, prot, gfns.size(), gfns.data(), errors.data());
  std::string subject = "domain " + std::to_string(domid) + ", " + std::to_string(gfns.size()) + " pages from gfn " +
                        (gfns.empty() ? std::string("-") : std::to_string(gfns[0]));
  if (!addr) ThrowXenError("xenforeignmemory_map", subject);
  ForeignMapping mapping(this, addr, gfns.size(), std::move(errors));
  if (!allow_holes) {
    for (size_t i = 0; i < gfns.size(); i++) {
      if (mapping.error(i)) {
        errno = -mapping.error(i);
        ThrowXenError("xenforeignmemory_map", "domain " + std::to_string(domid) + " gfn " + std::to_string(gfns[i]));
      }
    }
  }
  return mapping;
}

}  // namespace snowflock
