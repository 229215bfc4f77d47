// The consumer side of one vm_event ring (mem_paging or monitor): the shared page, the
// event channel to Xen's end, and the back ring. Requests come with the vCPU paused; the
// answer (same reason, same union) lets it run again.
#pragma once

#include <cstdint>

#include "xen_headers.h"

namespace snowflock {

class VmEventChannel {
 public:
  // ring: the mapped ring page (owned by the caller), initialised here.
  VmEventChannel(uint32_t domid, void* ring, uint32_t xen_port, const char* what);
  ~VmEventChannel();
  VmEventChannel(const VmEventChannel&) = delete;
  VmEventChannel& operator=(const VmEventChannel&) = delete;

  int fd() const;
  void Acknowledge();  // clears the pending notification (after poll() says readable)
  bool Pop(vm_event_request_t* request);
  void Respond(const vm_event_request_t& request);
  void Notify();

 private:
  xenevtchn_handle* evtchn_ = nullptr;
  int local_port_ = -1;
  vm_event_back_ring_t back_{};
};

}  // namespace snowflock
