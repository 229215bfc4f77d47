// A cancelled suspend makes the guest's SCHEDOP_shutdown(suspend) return 1, so its kernel
// keeps its event channels, vcpu_info and grants. libxc's fast resume writes that 1 with
// XEN_DOMCTL_setvcpucontext, which also marks vCPU 0's extended FPU state (AVX and up) as
// initial: a user task whose registers were still live on that vCPU when the kernel suspended
// comes back with its upper vector halves zeroed. libxc also skips HVM guests whose
// HVM_PARAM_CALLBACK_IRQ is 0. Here the 1 goes in through a partial HVM context instead
// (header, vCPU 0's CPU record, end): the CPU record carries only the legacy FPU area and
// leaves the rest of the xsave state alone.
#include "suspend_cancel.h"

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "domains.h"
#include "xen_error.h"
#include "xen_libs.h"
#include "xen_logger.h"

namespace snowflock {
namespace {

std::string Subject(uint32_t domid) { return "domain " + std::to_string(domid); }

std::vector<uint8_t> HvmContext(xc_interface* xch, uint32_t domid) {
  int size = Xen().xc_domain_hvm_getcontext(xch, domid, nullptr, 0);
  if (size <= 0) ThrowXenError("xc_domain_hvm_getcontext", Subject(domid));
  std::vector<uint8_t> buf(size);
  size = Xen().xc_domain_hvm_getcontext(xch, domid, buf.data(), buf.size());
  if (size <= 0) ThrowXenError("xc_domain_hvm_getcontext", Subject(domid));
  buf.resize(size);
  return buf;
}

void Append(std::vector<uint8_t>& out, const hvm_save_descriptor& d, const uint8_t* body) {
  const auto* p = reinterpret_cast<const uint8_t*>(&d);
  out.insert(out.end(), p, p + sizeof d);
  out.insert(out.end(), body, body + d.length);
}

// Header, vCPU 0's CPU record with rax = 1, end marker.
std::vector<uint8_t> CancelledContext(const std::vector<uint8_t>& full, uint32_t domid) {
  std::vector<uint8_t> out;
  bool header = false, cpu = false;
  for (size_t off = 0; off + sizeof(hvm_save_descriptor) <= full.size();) {
    hvm_save_descriptor d;
    std::memcpy(&d, full.data() + off, sizeof d);
    const uint8_t* body = full.data() + off + sizeof d;
    if (off + sizeof d + d.length > full.size()) break;
    if (d.typecode == HVM_SAVE_CODE(HEADER) && !header) {
      Append(out, d, body);
      header = true;
    } else if (d.typecode == HVM_SAVE_CODE(CPU) && d.instance == 0 && header && !cpu) {
      if (d.length != sizeof(hvm_hw_cpu)) break;
      hvm_hw_cpu regs;
      std::memcpy(&regs, body, sizeof regs);
      regs.rax = 1;
      Append(out, d, reinterpret_cast<const uint8_t*>(&regs));
      cpu = true;
    } else if (d.typecode == HVM_SAVE_CODE(END)) {
      break;
    }
    off += sizeof d + d.length;
  }
  if (!header || !cpu) throw XenError("xc_domain_hvm_getcontext", Subject(domid), EINVAL, "no header or vCPU 0 record in the HVM context");
  hvm_save_descriptor end{HVM_SAVE_CODE(END), 0, 0};
  Append(out, end, nullptr);
  return out;
}

}  // namespace

void CancelSuspend(xc_interface* xch, uint32_t domid) {
  xc_domaininfo_t info = DomainInfo(xch, domid);
  uint32_t reason = (info.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
  if (!(info.flags & XEN_DOMINF_shutdown) || reason != SHUTDOWN_suspend) {
    throw XenError("cancel suspend", Subject(domid), EINVAL, "the domain is not suspended");
  }
  ClearXenLog();
  if (info.flags & XEN_DOMINF_hvm_guest) {
    std::vector<uint8_t> ctx = CancelledContext(HvmContext(xch, domid), domid);
    if (Xen().xc_domain_hvm_setcontext(xch, domid, ctx.data(), ctx.size())) ThrowXenError("xc_domain_hvm_setcontext", Subject(domid));
    // With the return code in place, the plain resume is XEN_DOMCTL_resumedomain alone.
    if (Xen().xc_domain_resume(xch, domid, 0)) ThrowXenError("xc_domain_resume", Subject(domid));
  } else if (Xen().xc_domain_resume(xch, domid, 1)) {
    ThrowXenError("xc_domain_resume", Subject(domid));  // PV: libxc's fast path is right
  }
}

}  // namespace snowflock
