// The mem_access fault backend (access_backend.cc) against fake Xen libraries: which
// hypercalls it makes for Remove and Install, how it reports failures, and that closing it
// gives back the monitor ring. Runs on any Linux machine; prints TAP.
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../fault_backend.h"
#include "../xen_error.h"
#include "expect_xen_error.h"
#include "fake_xen.h"
#include "tap.h"

namespace snowflock {
namespace {

constexpr uint32_t kDomid = 7;

std::unique_ptr<FaultBackend> OpenAccess() { return OpenFaultBackend(FaultMode::kAccess, fake::Xch(), kDomid, false); }

fake::MemAccessCall Restrict(uint64_t first_gfn, uint32_t count) { return {kDomid, XENMEM_access_n, first_gfn, count}; }
fake::MemAccessCall Lift(uint64_t first_gfn, uint32_t count) { return {kDomid, XENMEM_access_rwx, first_gfn, count}; }

// Bytes no two pages share, so a page copied to the wrong gfn or cut short shows.
std::vector<uint8_t> PagePattern(uint64_t gfn) {
  std::vector<uint8_t> page(XC_PAGE_SIZE);
  uint32_t x = uint32_t(gfn) * 2654435761u + 1;
  for (uint8_t& b : page) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    b = uint8_t(x);
  }
  return page;
}

void Stage(FaultBackend& backend, const std::vector<uint64_t>& gfns) {
  for (size_t i = 0; i < gfns.size(); i++) std::memcpy(backend.staging(i), PagePattern(gfns[i]).data(), XC_PAGE_SIZE);
}

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const std::vector<uint64_t> kGfns = {10, 11, 12, 20, 21, 40};  // runs of 3, 2 and 1

std::vector<tap::Test> Tests() {
  return {
      {"open enables the monitor and binds its ring's event channel",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         CHECK_EQ(std::string(backend->name()), std::string("access"));
         CHECK_EQ(f.monitor_enabled, std::vector<uint32_t>{kDomid});
         CHECK(f.bound == (std::vector<std::pair<uint32_t, uint32_t>>{{kDomid, f.monitor_port}}));
         CHECK_EQ(backend->channel().fd(), fake::kEvtchnFd);
         // No takeover for mem_access: nothing for a later memtap to attach to.
         CHECK_EQ(backend->xen_port(), 0u);
         CHECK_EQ(backend->ring_gfn(), 0u);
       }},

      {"open refuses to take over a ring",
       [] {
         XenError e = ExpectXenError([] { OpenFaultBackend(FaultMode::kAccess, fake::Xch(), kDomid, true); });
         CHECK_EQ(e.err(), EINVAL);
         CHECK(fake::Get().monitor_enabled.empty());
       }},

      {"open reports a failed xc_monitor_enable",
       [] {
         fake::Get().monitor_enable_errno = EBUSY;
         XenError e = ExpectXenError([] { OpenAccess(); });
         CHECK_EQ(e.call(), std::string("xc_monitor_enable"));
         CHECK_EQ(e.err(), EBUSY);
         CHECK_EQ(fake::Get().evtchn_opened, 0);
       }},

      {"open with a failed event channel bind unmaps the ring and disables the monitor",
       [] {
         fake::Get().bind_errno = EPERM;
         XenError e = ExpectXenError([] { OpenAccess(); });
         CHECK_EQ(e.call(), std::string("xenevtchn_bind_interdomain"));
         CHECK_EQ(e.err(), EPERM);
         CHECK_EQ(fake::Get().monitor_disabled, std::vector<uint32_t>{kDomid});
         // The ring page and the handles are checked by the harness after every test.
       }},

      {"Remove restricts each run of consecutive gfns with one xc_set_mem_access",
       [] {
         auto backend = OpenAccess();
         std::vector<uint64_t> refused;
         CHECK_EQ(backend->Remove(kDomid, kGfns.data(), kGfns.size(), &refused), kGfns.size());
         CHECK_EQ(fake::Get().mem_access_calls, (std::vector<fake::MemAccessCall>{Restrict(10, 3), Restrict(20, 2), Restrict(40, 1)}));
         CHECK(refused.empty());
       }},

      {"Remove: EINVAL on the first run means no mem_access here (Intel EPT only)",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         f.mem_access_fail_call = 1;
         f.mem_access_errno = EINVAL;
         std::vector<uint64_t> refused;
         XenError e = ExpectXenError([&] { backend->Remove(kDomid, kGfns.data(), kGfns.size(), &refused); });
         CHECK_EQ(e.call(), std::string("xc_set_mem_access"));
         CHECK_EQ(e.err(), EINVAL);
         CHECK(Contains(e.what(), "xc_set_mem_access"));
         CHECK(Contains(e.what(), "Intel EPT only"));
         CHECK_EQ(f.mem_access_calls.size(), size_t(1));
       }},

      {"Remove: a failure on a later run refuses exactly that run's gfns",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         f.mem_access_fail_call = 2;
         f.mem_access_errno = EINVAL;  // not thrown: mem_access works, this run did not
         std::vector<uint64_t> refused;
         CHECK_EQ(backend->Remove(kDomid, kGfns.data(), kGfns.size(), &refused), size_t(4));
         CHECK_EQ(refused, (std::vector<uint64_t>{20, 21}));
         CHECK_EQ(f.mem_access_calls.size(), size_t(3));
       }},

      {"Install copies each staging page byte-exactly into its gfn",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         for (uint64_t g : kGfns) f.guest[g].assign(XC_PAGE_SIZE, 0xAA);  // what was there is overwritten
         Stage(*backend, kGfns);
         std::vector<long> result;
         backend->Install(kDomid, kGfns.data(), kGfns.size(), &result);
         CHECK_EQ(result, std::vector<long>(kGfns.size(), 0));
         CHECK_EQ(f.map_calls.size(), size_t(1));
         CHECK_EQ(f.map_calls[0].domid, kDomid);
         CHECK_EQ(f.map_calls[0].prot, PROT_READ | PROT_WRITE);
         CHECK_EQ(f.map_calls[0].gfns, kGfns);
         for (uint64_t g : kGfns) CHECK(f.guest[g] == PagePattern(g));
       }},

      {"Install lifts access to rwx once per run",
       [] {
         auto backend = OpenAccess();
         Stage(*backend, kGfns);
         std::vector<long> result;
         backend->Install(kDomid, kGfns.data(), kGfns.size(), &result);
         CHECK_EQ(fake::Get().mem_access_calls, (std::vector<fake::MemAccessCall>{Lift(10, 3), Lift(20, 2), Lift(40, 1)}));
       }},

      {"Install reports a page that did not map for that page only, and leaves it restricted",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         f.page_errno[11] = ENOENT;
         Stage(*backend, kGfns);
         std::vector<long> result;
         backend->Install(kDomid, kGfns.data(), kGfns.size(), &result);
         CHECK_EQ(result, (std::vector<long>{0, -ENOENT, 0, 0, 0, 0}));
         CHECK(!f.guest.count(11));
         for (uint64_t g : kGfns)
           if (g != 11) CHECK(f.guest[g] == PagePattern(g));
         // The guest must fault on 11 again rather than read what lies under the restriction.
         for (const auto& c : f.mem_access_calls) {
           CHECK(c.access == XENMEM_access_rwx);
           CHECK(c.first_gfn > 11 || c.first_gfn + c.count <= 11);
         }
         CHECK_EQ(f.mem_access_calls.size(), size_t(4));  // 10 | 12 | 20-21 | 40
       }},

      {"Install reports -errno for every page of a run whose lift failed",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         f.mem_access_fail_call = 2;
         f.mem_access_errno = EACCES;
         Stage(*backend, kGfns);
         std::vector<long> result;
         backend->Install(kDomid, kGfns.data(), kGfns.size(), &result);
         CHECK_EQ(result, (std::vector<long>{0, 0, 0, -EACCES, -EACCES, 0}));
         CHECK_EQ(f.mem_access_calls.size(), size_t(3));
       }},

      {"Install with a failed foreign map throws with Xen's log line and lifts nothing",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         f.map_errno = ENOMEM;
         f.map_log = "privcmd batch failed";
         std::vector<long> result;
         XenError e = ExpectXenError([&] { backend->Install(kDomid, kGfns.data(), kGfns.size(), &result); });
         CHECK_EQ(e.call(), std::string("xenforeignmemory_map"));
         CHECK_EQ(e.err(), ENOMEM);
         CHECK(Contains(e.xen_log(), "privcmd batch failed"));
         CHECK(f.mem_access_calls.empty());
       }},

      {"FaultGfn takes the gfn of a mem_access request popped from the ring",
       [] {
         auto backend = OpenAccess();
         // Xen's side of the ring the backend initialised.
         vm_event_front_ring_t xen_side;
         FRONT_RING_INIT(&xen_side, static_cast<vm_event_sring_t*>(fake::Get().ring), XC_PAGE_SIZE);
         vm_event_request_t sent{};
         sent.version = VM_EVENT_INTERFACE_VERSION;
         sent.reason = VM_EVENT_REASON_MEM_ACCESS;
         sent.vcpu_id = 1;
         sent.flags = VM_EVENT_FLAG_VCPU_PAUSED;
         sent.u.mem_access.gfn = 0x12345;
         sent.u.mem_access.flags = MEM_ACCESS_R;
         *RING_GET_REQUEST(&xen_side, xen_side.req_prod_pvt) = sent;
         xen_side.req_prod_pvt++;
         RING_PUSH_REQUESTS(&xen_side);

         vm_event_request_t popped;
         CHECK(backend->channel().Pop(&popped));
         uint64_t gfn = 0;
         CHECK(backend->FaultGfn(popped, &gfn));
         CHECK_EQ(gfn, uint64_t(0x12345));
         CHECK(!backend->channel().Pop(&popped));

         backend->channel().Respond(popped);
         CHECK(RING_HAS_UNCONSUMED_RESPONSES(&xen_side));
         const vm_event_response_t* answer = RING_GET_RESPONSE(&xen_side, xen_side.rsp_cons);
         CHECK_EQ(answer->reason, uint32_t(VM_EVENT_REASON_MEM_ACCESS));
         CHECK_EQ(answer->u.mem_access.gfn, uint64_t(0x12345));
         CHECK_EQ(answer->flags & VM_EVENT_FLAG_VCPU_PAUSED, uint32_t(VM_EVENT_FLAG_VCPU_PAUSED));
       }},

      {"FaultGfn refuses requests of other reasons",
       [] {
         auto backend = OpenAccess();
         for (uint32_t reason : {VM_EVENT_REASON_MEM_PAGING, VM_EVENT_REASON_WRITE_CTRLREG, VM_EVENT_REASON_SOFTWARE_BREAKPOINT}) {
           vm_event_request_t r{};
           r.reason = reason;
           r.u.mem_access.gfn = 99;
           uint64_t gfn = 5;
           CHECK(!backend->FaultGfn(r, &gfn));
           CHECK_EQ(gfn, uint64_t(5));
         }
       }},

      {"the channel unmasks the pending port and notifies Xen's end",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         f.pending_port = f.local_port;
         backend->channel().Acknowledge();
         backend->channel().Acknowledge();  // nothing pending: nothing to unmask
         backend->channel().Notify();
         CHECK_EQ(f.unmasked, std::vector<int>{f.local_port});
         CHECK_EQ(f.notified, std::vector<int>{f.local_port});
       }},

      {"closing disables the monitor, unbinds the event channel and unmaps the ring",
       [] {
         auto backend = OpenAccess();
         auto& f = fake::Get();
         CHECK(f.monitor_disabled.empty());
         backend.reset();
         CHECK_EQ(f.monitor_disabled, std::vector<uint32_t>{kDomid});
         CHECK_EQ(f.unbound, std::vector<int>{f.local_port});
         CHECK_EQ(f.evtchn_closed, 1);
         CHECK_EQ(f.fmem_closed, 1);
         unsigned char resident;
         CHECK(mincore(f.ring, XC_PAGE_SIZE, &resident) == -1 && errno == ENOMEM);
       }},
  };
}

}  // namespace
}  // namespace snowflock

int main() {
  using namespace snowflock;
  return tap::Run(Tests(), fake::Reset, fake::Leftovers);
}
