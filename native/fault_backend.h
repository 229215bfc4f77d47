// How a clone is made to fault on the pages it does not have yet, and how a fetched page is
// put in place. Two ways on today's Xen:
//   paging  (mem_paging, Xen built with CONFIG_MEM_PAGING, any HAP CPU): page out, load with prep
//   access  (mem_access, stock Xen on Intel EPT): populate, restrict to no access, write, lift
// memtap's fault loop is the same for both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "vm_event_channel.h"
#include "xen_headers.h"

namespace snowflock {

class FaultBackend {
 public:
  // Pages handled per call of Remove/Install.
  static constexpr size_t kBatch = 128;

  virtual ~FaultBackend() = default;
  virtual const char* name() const = 0;
  // Xen's end of the ring's event channel.
  virtual uint32_t xen_port() const = 0;
  virtual uint64_t ring_gfn() const = 0;
  VmEventChannel& channel() { return *channel_; }

  // The gfn a request faulted on, or false for a request that is not a fault of ours.
  virtual bool FaultGfn(const vm_event_request_t& request, uint64_t* gfn) const = 0;
  // Makes up to kBatch gfns fault on first touch; returns how many; refusals are appended.
  virtual size_t Remove(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<uint64_t>* refused) = 0;
  // Page i of the next Install goes here first.
  virtual uint8_t* staging(size_t i) = 0;
  // Puts staging(0..n-1) in place at gfns. result[i] is 0 when page i is in place (or was
  // already: a racing duplicate), else -errno: that page still faults, and is fetched again.
  virtual void Install(uint32_t domid, const uint64_t* gfns, size_t n, std::vector<long>* result) = 0;
  // Once every page is in: ends Xen's side of the ring, so nothing of memtap stays in the
  // clone (settle; the ring page left the guest's physmap when the ring was enabled). The backend is unusable after.
  virtual void Detach(uint32_t domid) = 0;

 protected:
  std::unique_ptr<VmEventChannel> channel_;
};

enum class FaultMode { kPaging, kAccess };

// takeover (paging only): replace the ring of a memtap that ended with a fresh one.
std::unique_ptr<FaultBackend> OpenFaultBackend(FaultMode mode, xc_interface* xch, uint32_t domid, bool takeover);

}  // namespace snowflock
