// The mem_paging vm_event ring of one domain. When a vCPU touches a paged-out page, Xen
// pauses that vCPU and puts a request here; the vCPU runs again when we answer.
// The ring page stays in the guest's physmap (at HVM_PARAM_PAGING_RING_PFN, above guest RAM)
// so that a memtap started after this one ended can map it again and take over.
#pragma once

#include <cstdint>

#include "foreign_memory.h"
#include "xen_headers.h"

namespace snowflock {

class PagingRing {
 public:
  // Enables paging on domid. With takeover, paging is already enabled and Xen's end of the
  // event channel is xen_port: attach to the ring where the previous listener stopped.
  PagingRing(xc_interface* xch, uint32_t domid, bool takeover, uint32_t xen_port);
  ~PagingRing();  // unbinds and unmaps; paging stays enabled (pages are still out)
  PagingRing(const PagingRing&) = delete;
  PagingRing& operator=(const PagingRing&) = delete;

  uint32_t xen_port() const { return xen_port_; }
  uint64_t ring_gfn() const { return ring_gfn_; }
  int fd() const;

  // Clears the event channel's pending notification (call after poll() says readable).
  void Acknowledge();
  bool Pop(vm_event_request_t* request);
  // Answers a paging request (unpausing the vCPU it paused); Notify() makes Xen look.
  void Respond(const vm_event_request_t& request);
  void Notify();

 private:
  uint32_t domid_;
  uint32_t xen_port_ = 0;
  uint64_t ring_gfn_ = 0;
  ForeignMemory fmem_;
  ForeignMapping page_;
  xenevtchn_handle* evtchn_ = nullptr;
  int local_port_ = -1;
  vm_event_back_ring_t back_{};
};

}  // namespace snowflock
