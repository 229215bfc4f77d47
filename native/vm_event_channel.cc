#include "vm_event_channel.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

VmEventChannel::VmEventChannel(uint32_t domid, void* ring, uint32_t xen_port, const char* what) {
  const XenLibs& xen = Xen();
  auto* shared = static_cast<vm_event_sring_t*>(ring);
  SHARED_RING_INIT(shared);
  BACK_RING_INIT(&back_, shared, XC_PAGE_SIZE);
  evtchn_ = xen.xenevtchn_open(nullptr, 0);
  if (!evtchn_) ThrowXenError("xenevtchn_open", "domain " + std::to_string(domid));
  local_port_ = xen.xenevtchn_bind_interdomain(evtchn_, domid, xen_port);
  if (local_port_ < 0) {
    int err = errno;
    xen.xenevtchn_close(evtchn_);
    evtchn_ = nullptr;
    errno = err;
    ThrowXenError("xenevtchn_bind_interdomain", "domain " + std::to_string(domid) + " " + what + " port " + std::to_string(xen_port));
  }
}

VmEventChannel::~VmEventChannel() {
  if (!evtchn_) return;
  const XenLibs& xen = Xen();
  xen.xenevtchn_unbind(evtchn_, local_port_);
  xen.xenevtchn_close(evtchn_);
}

int VmEventChannel::fd() const { return Xen().xenevtchn_fd(evtchn_); }

void VmEventChannel::Acknowledge() {
  const XenLibs& xen = Xen();
  int port = xen.xenevtchn_pending(evtchn_);
  if (port >= 0) xen.xenevtchn_unmask(evtchn_, port);
}

bool VmEventChannel::Pop(vm_event_request_t* request) {
  if (!RING_HAS_UNCONSUMED_REQUESTS(&back_)) return false;
  std::memcpy(request, RING_GET_REQUEST(&back_, back_.req_cons), sizeof *request);
  back_.req_cons++;
  back_.sring->req_event = back_.req_cons + 1;
  return true;
}

void VmEventChannel::Respond(const vm_event_request_t& request) {
  vm_event_response_t response{};
  response.version = VM_EVENT_INTERFACE_VERSION;
  response.vcpu_id = request.vcpu_id;
  response.flags = request.flags & VM_EVENT_FLAG_VCPU_PAUSED;
  response.reason = request.reason;
  // The gfn and flags travel back as they came (mem_paging and mem_access alike).
  std::memcpy(&response.u, &request.u, sizeof response.u);
  std::memcpy(RING_GET_RESPONSE(&back_, back_.rsp_prod_pvt), &response, sizeof response);
  back_.rsp_prod_pvt++;
  RING_PUSH_RESPONSES(&back_);
}

void VmEventChannel::Notify() { Xen().xenevtchn_notify(evtchn_, local_port_); }

}  // namespace snowflock
