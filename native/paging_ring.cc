#include "paging_ring.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

PagingRing::PagingRing(xc_interface* xch, uint32_t domid, bool takeover, uint32_t xen_port) : domid_(domid) {
  const XenLibs& xen = Xen();
  const std::string subject = "domain " + std::to_string(domid);
  if (xen.xc_hvm_param_get(xch, domid, HVM_PARAM_PAGING_RING_PFN, &ring_gfn_) || ring_gfn_ == 0)
    throw XenError("xc_hvm_param_get", subject + " has no paging ring page (HVM_PARAM_PAGING_RING_PFN)", ENOENT, "");
  page_ = fmem_.Map(domid, PROT_READ | PROT_WRITE, {xen_pfn_t(ring_gfn_)}, false);
  auto* shared = reinterpret_cast<vm_event_sring_t*>(page_.page(0));
  if (takeover) {
    xen_port_ = xen_port;
    // Requests after the last answered one were taken by the listener that ended but
    // never answered: handle them again.
    BACK_RING_ATTACH(&back_, shared, shared->rsp_prod, XC_PAGE_SIZE);
  } else {
    ClearXenLog();
    if (xen.xc_mem_paging_enable(xch, domid, &xen_port_)) {
      if (errno == EBUSY) throw XenError("xc_mem_paging_enable", subject + " already has a paging listener", EBUSY, TakeXenLog());
      ThrowXenError("xc_mem_paging_enable", subject);
    }
    SHARED_RING_INIT(shared);
    BACK_RING_INIT(&back_, shared, XC_PAGE_SIZE);
  }
  evtchn_ = xen.xenevtchn_open(nullptr, 0);
  if (!evtchn_) ThrowXenError("xenevtchn_open", subject);
  local_port_ = xen.xenevtchn_bind_interdomain(evtchn_, domid, xen_port_);
  if (local_port_ < 0) {
    int err = errno;
    xen.xenevtchn_close(evtchn_);
    evtchn_ = nullptr;
    errno = err;
    ThrowXenError("xenevtchn_bind_interdomain", subject + " paging port " + std::to_string(xen_port_) +
                                                    (takeover ? " (is another memtap still attached?)" : ""));
  }
}

PagingRing::~PagingRing() {
  if (!evtchn_) return;
  const XenLibs& xen = Xen();
  xen.xenevtchn_unbind(evtchn_, local_port_);
  xen.xenevtchn_close(evtchn_);
}

int PagingRing::fd() const { return Xen().xenevtchn_fd(evtchn_); }

void PagingRing::Acknowledge() {
  const XenLibs& xen = Xen();
  int port = xen.xenevtchn_pending(evtchn_);
  if (port >= 0) xen.xenevtchn_unmask(evtchn_, port);
}

bool PagingRing::Pop(vm_event_request_t* request) {
  if (!RING_HAS_UNCONSUMED_REQUESTS(&back_)) return false;
  std::memcpy(request, RING_GET_REQUEST(&back_, back_.req_cons), sizeof *request);
  back_.req_cons++;
  back_.sring->req_event = back_.req_cons + 1;
  return true;
}

void PagingRing::Respond(const vm_event_request_t& request) {
  vm_event_response_t response{};
  response.version = VM_EVENT_INTERFACE_VERSION;
  response.vcpu_id = request.vcpu_id;
  response.flags = request.flags & VM_EVENT_FLAG_VCPU_PAUSED;
  response.reason = request.reason;
  response.u.mem_paging.gfn = request.u.mem_paging.gfn;
  response.u.mem_paging.flags = request.u.mem_paging.flags;
  std::memcpy(RING_GET_RESPONSE(&back_, back_.rsp_prod_pvt), &response, sizeof response);
  back_.rsp_prod_pvt++;
  RING_PUSH_RESPONSES(&back_);
}

void PagingRing::Notify() { Xen().xenevtchn_notify(evtchn_, local_port_); }

}  // namespace snowflock
