// Capture's scan of a domain's memory map (domain_state.cc, ScanPopulated) against fake Xen
// libraries: the guest can raise its highest gfn, so the scan must refuse what no memory of
// the domain's size could reach, stop when cancelled, and leave the addon's worker threads to
// others. Runs on any Linux machine; prints TAP.
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../domain_state.h"
#include "../foreign_memory.h"
#include "../xen_error.h"
#include "expect_xen_error.h"
#include "fake_xen.h"
#include "tap.h"

namespace snowflock {

// domain_state.cc's capture reads the domain's info through domains.cc, which needs Node; the
// scan never does.
xc_domaininfo_t DomainInfo(xc_interface*, uint32_t domid) {
  throw XenError("fake", "DomainInfo is not faked", ENOSYS, "");
}

namespace {

constexpr uint32_t kDomid = 7;
constexpr uint64_t kMaxPages = 0x8000;  // 128 MiB

// RAM below 0x7f00 and the toolstack's special pages at 0xfeff0..0xfefff; holes elsewhere.
bool Hole(uint64_t gfn) { return !(gfn < 0x7f00 || (gfn >= 0xfeff0 && gfn < 0xff000)); }

uint64_t GfnsMapped() {
  uint64_t n = 0;
  for (const fake::ForeignMapCall& c : fake::Get().map_calls) n += c.gfns.size();
  return n;
}

std::vector<GfnRange> Scan(uint64_t max_gpfn, const std::function<bool()>& keep_going = [] { return true; }) {
  ForeignMemory fmem;
  return ScanPopulated(fmem, kDomid, kMaxPages, max_gpfn, keep_going);
}

bool SameRanges(const std::vector<GfnRange>& a, const std::vector<std::pair<uint64_t, uint64_t>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (a[i].start != b[i].first || a[i].count != b[i].second) return false;
  return true;
}

std::vector<tap::Test> Tests() {
  return {
      {"an honest domain's scan finds its RAM and special pages in 4 map calls",
       [] {
         fake::Get().hole = Hole;
         std::vector<GfnRange> found = Scan(0xfefff);
         CHECK(SameRanges(found, {{0, 0x7f00}, {0xfeff0, 0x10}}));
         // 0..0x9000 (max_pages + 0x1000) in 16384-gfn batches, then 0xfc000..0xff000
         CHECK_EQ(fake::Get().map_calls.size(), size_t(4));
       }},

      {"a highest gfn of 2^34 is refused with E2BIG before any map call",
       [] {
         fake::Get().hole = Hole;
         fake::Get().map_call_limit = 64;
         XenError e = ExpectXenError([] { Scan(uint64_t(1) << 34); });
         CHECK_EQ(e.err(), E2BIG);
         CHECK(std::string(e.what()).find("gfn 0x400000000 mapped") != std::string::npos);
         CHECK_EQ(fake::Get().map_calls.size(), size_t(0));
       }},

      {"a highest gfn just below the limit is scanned in bounded work",
       [] {
         fake::Get().hole = Hole;
         fake::Get().map_call_limit = 1024;
         Scan(ScanLimit(kMaxPages) - 1);
         // low RAM, the special region, and RAM plus room for holes above 4 GiB; no more
         CHECK(GfnsMapped() <= (kMaxPages + 0x1000) + 0x4000 + kMaxPages + 0x100000);
       }},

      {"keep_going() returning false stops the scan with ECANCELED before the next batch",
       [] {
         fake::Get().hole = Hole;
         int batches = 0;
         XenError e = ExpectXenError([&] { Scan(ScanLimit(kMaxPages) - 1, [&] { return ++batches <= 2; }); });
         CHECK_EQ(e.err(), ECANCELED);
         CHECK_EQ(fake::Get().map_calls.size(), size_t(2));
       }},

      {"CancelDomainScans stops a running scan of that domain",
       [] {
         fake::Get().hole = Hole;
         fake::Get().on_map = [] { CancelDomainScans(kDomid); };
         XenError e = ExpectXenError([] { Scan(ScanLimit(kMaxPages) - 1); });
         CHECK_EQ(e.err(), ECANCELED);
         CHECK_EQ(fake::Get().map_calls.size(), size_t(1));
         fake::Get().on_map = nullptr;
         CHECK_EQ(Scan(0xfefff).size(), size_t(2));  // the next capture of the domain runs
       }},

      {"with kMaxConcurrentScans scans running, another is refused with EBUSY and maps nothing",
       [] {
         std::mutex mu;
         std::condition_variable cv;
         int waiting = 0;
         bool release = false;
         // Each running scan waits before its first batch, then gives up (no concurrent maps).
         auto held = [&] {
           std::unique_lock<std::mutex> lock(mu);
           waiting++;
           cv.notify_all();
           cv.wait(lock, [&] { return release; });
           return false;
         };
         std::vector<std::thread> running;
         std::vector<int> errs(kMaxConcurrentScans);
         for (int i = 0; i < kMaxConcurrentScans; i++)
           running.emplace_back([&, i] {
             ForeignMemory fmem;
             try {
               ScanPopulated(fmem, kDomid + 1 + i, kMaxPages, 0xfefff, held);
             } catch (const XenError& e) {
               errs[i] = e.err();
             }
           });
         {
           std::unique_lock<std::mutex> lock(mu);
           cv.wait(lock, [&] { return waiting == kMaxConcurrentScans; });
         }
         XenError e = ExpectXenError([] { Scan(0xfefff); });
         {
           std::lock_guard<std::mutex> lock(mu);
           release = true;
         }
         cv.notify_all();
         for (std::thread& t : running) t.join();
         CHECK_EQ(e.err(), EBUSY);
         CHECK_EQ(fake::Get().map_calls.size(), size_t(0));
         for (int err : errs) CHECK_EQ(err, ECANCELED);
         CHECK_EQ(Scan(0xfefff).size(), size_t(2));  // places are given back
       }},
  };
}

}  // namespace
}  // namespace snowflock

int main() { return tap::Run(snowflock::Tests(), snowflock::fake::Reset, snowflock::fake::Leftovers); }
