#include "memtap.h"

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <unordered_set>

#include "foreign_memory.h"
#include "suspend_watch.h"
#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Thrown out of a memserver wait when Stop() is called: the clone stays paused.
struct StopRequested {};

}  // namespace

Memtap::Memtap(MemtapOptions options)
    : opt_(std::move(options)), client_(opt_.host, opt_.port, opt_.token, opt_.vmid, opt_.timeout_ms), prefetch_(opt_.prefetch) {
  fetch_buffer_.resize(FaultBackend::kBatch * XC_PAGE_SIZE);
}

Memtap::~Memtap() { Stop(); }

PrepareReport Memtap::Prepare() {
  PrepareReport report;
  auto t0 = Clock::now();
  Welcome w = client_.Connect();
  image_id_ = w.image_id;
  report.welcome_ms = MsSince(t0);
  uint64_t top = 0;
  for (const GfnRange& r : w.evict) top = std::max(top, r.start + r.count);
  {
    std::lock_guard<std::mutex> lock(mu_);
    states_.Resize(top);
  }
  backend_ = OpenFaultBackend(opt_.mode, xc_.get(), opt_.domid, opt_.takeover);
  report.xen_port = backend_->xen_port();
  report.ring_gfn = backend_->ring_gfn();
  if (opt_.takeover) {
    // Which pages the previous memtap loaded is unknown: treat the whole evict set as out.
    // Loading a page that is already in is refused by Xen and costs one fetch.
    std::lock_guard<std::mutex> lock(mu_);
    for (const GfnRange& r : w.evict)
      for (uint64_t g = r.start; g < r.start + r.count; g++) states_.Set(g, PageState::kOut);
    return report;
  }
  t0 = Clock::now();
  LoadEager(w);
  report.eager = w.eager.size();
  report.eager_ms = MsSince(t0);
  t0 = Clock::now();
  PageOut(w, &report);
  report.evict_ms = MsSince(t0);
  return report;
}

void Memtap::LoadEager(const Welcome& w) {
  ForeignMemory fmem;
  for (size_t i = 0; i < w.eager.size(); i += FaultBackend::kBatch) {
    size_t n = std::min(FaultBackend::kBatch, w.eager.size() - i);
    std::vector<uint64_t> gfns(w.eager.begin() + long(i), w.eager.begin() + long(i + n));
    client_.Get(gfns.data(), n, fetch_buffer_.data());
    std::vector<xen_pfn_t> pfns(gfns.begin(), gfns.end());
    ForeignMapping m = fmem.Map(opt_.domid, PROT_READ | PROT_WRITE, pfns, false);
    std::memcpy(m.page(0), fetch_buffer_.data(), n * XC_PAGE_SIZE);
  }
}

void Memtap::PageOut(const Welcome& w, PrepareReport* report) {
  std::vector<uint64_t> batch;
  std::vector<uint64_t> refused;
  auto flush = [&] {
    std::vector<uint64_t> failed;
    size_t done = backend_->Remove(opt_.domid, batch.data(), batch.size(), &failed);
    std::unordered_set<uint64_t> bad(failed.begin(), failed.end());
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t g : batch)
      if (!bad.count(g)) states_.Set(g, PageState::kOut);
    report->evicted += done;
    report->refused += failed.size();
    batch.clear();
  };
  for (const GfnRange& r : w.evict) {
    for (uint64_t g = r.start; g < r.start + r.count; g++) {
      if (g == backend_->ring_gfn()) continue;
      batch.push_back(g);
      if (batch.size() == FaultBackend::kBatch) flush();
    }
  }
  if (!batch.empty()) flush();
}

void Memtap::Start(std::function<void(const MemtapEvent&)> emit) {
  if (thread_.joinable()) return;
  if (!backend_) throw XenError("memtap", "domain " + std::to_string(opt_.domid) + ": start before prepare", EINVAL, "");
  emit_ = std::move(emit);
  stop_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.running = true;
  }
  thread_ = std::thread([this] { Loop(); });
}

void Memtap::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

uint64_t Memtap::MarkFree(const std::vector<GfnRange>& ranges) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = states_.MarkFree(ranges);
  stats_.free_marked += n;
  return n;
}

void Memtap::Settle() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stats_.settled) stats_.settling = true;
  settle_ = true;
}

void Memtap::SetPrefetch(uint32_t pages) { prefetch_.store(std::min<uint32_t>(pages, FaultBackend::kBatch - 1)); }

MemtapStats Memtap::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Memtap::SayGoodbye() {
  try {
    if (!client_.connected()) client_.Connect();
  } catch (const XenError&) {
    return;  // the server is gone already
  }
  client_.Bye();
}

void Memtap::Loop() {
  std::string failure;
  bool settled = false;
  bool held_for_suspend = false;  // paused by us until settled, so a save finds every page in
  try {
    VmEventChannel& ring = backend_->channel();
    SuspendWatch suspend(opt_.domid);
    struct pollfd p[2] = {{ring.fd(), POLLIN, 0}, {suspend.fd(), POLLIN, 0}};
    std::vector<vm_event_request_t> requests;
    while (!stop_) {
      // Settling loads pages between faults: the guest's own faults still come first.
      bool settling = settle_.load();
      if (poll(p, 2, settling ? 0 : 100) > 0) {
        if (p[0].revents) ring.Acknowledge();
        if (p[1].revents && suspend.SuspendRequested() && !held_for_suspend) {
          Xen().xc_domain_pause(xc_.get(), opt_.domid);
          held_for_suspend = true;
          Settle();
          emit_({"settle-started", "a toolstack asked domain " + std::to_string(opt_.domid) +
                                       " to suspend (xl save or migrate): it is held until every page is in"});
          continue;
        }
      }
      vm_event_request_t r;
      while (ring.Pop(&r)) requests.push_back(r);
      if (!requests.empty()) {
        Serve(requests);
        requests.clear();
        continue;
      }
      if (settling && !SettleStep()) {
        // Every page is in, so no request can come that is not already answered.
        backend_->Detach(opt_.domid);
        settled = true;
        if (held_for_suspend) Xen().xc_domain_unpause(xc_.get(), opt_.domid);
        break;
      }
    }
  } catch (const StopRequested&) {
  } catch (const XenError& e) {
    failure = e.what();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.running = false;
    stats_.settling = false;
    stats_.settled = settled;
  }
  if (settled) emit_({"settled", std::to_string(stats_.settle_loaded) + " pages loaded to settle"});
  if (!failure.empty()) {
    // Whatever broke, a paused clone is better than one that runs on wrong memory.
    Xen().xc_domain_pause(xc_.get(), opt_.domid);
    emit_({"failed", failure});
  }
  emit_({"stopped", failure});
}

void Memtap::InstallZeros(const uint64_t* gfns, size_t n, std::vector<long>* result) {
  for (size_t k = 0; k < n; k++) std::memset(backend_->staging(k), 0, XC_PAGE_SIZE);
  backend_->Install(opt_.domid, gfns, n, result);
}

double Memtap::InstallFetched(const std::vector<uint64_t>& gfns, std::vector<long>* result) {
  auto t0 = Clock::now();
  Fetch(gfns, fetch_buffer_.data());
  double ms = MsSince(t0);
  for (size_t k = 0; k < gfns.size(); k++) std::memcpy(backend_->staging(k), fetch_buffer_.data() + k * XC_PAGE_SIZE, XC_PAGE_SIZE);
  backend_->Install(opt_.domid, gfns.data(), gfns.size(), result);
  return ms;
}

bool Memtap::SettleStep() {
  std::vector<uint64_t> gfns, fetch, zero;
  {
    std::lock_guard<std::mutex> lock(mu_);
    states_.NextUnloaded(&settle_cursor_, FaultBackend::kBatch, &gfns);
    for (uint64_t g : gfns) (states_.Get(g) == PageState::kFree ? zero : fetch).push_back(g);
  }
  if (gfns.empty()) {
    // A page refused on the way (settle_cursor_ went past it) is still to load: look again.
    std::lock_guard<std::mutex> lock(mu_);
    settle_cursor_ = 0;
    states_.NextUnloaded(&settle_cursor_, 1, &gfns);
    settle_cursor_ = 0;
    return !gfns.empty();
  }
  std::vector<long> result;
  std::vector<uint64_t> installed;
  auto keep = [&](const std::vector<uint64_t>& batch) {
    for (size_t k = 0; k < batch.size(); k++) {
      if (result[k] == 0) installed.push_back(batch[k]);
      else NoteLoadFailure(batch[k], result[k], true);
    }
  };
  if (!zero.empty()) {
    InstallZeros(zero.data(), zero.size(), &result);
    keep(zero);
  }
  if (!fetch.empty()) {
    InstallFetched(fetch, &result);
    keep(fetch);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t g : installed) states_.Set(g, PageState::kIn);
  stats_.settle_loaded += installed.size();
  if (!fetch.empty()) {
    stats_.fetches++;
    stats_.fetched_pages += fetch.size();
  }
  return true;
}

void Memtap::Serve(std::vector<vm_event_request_t>& requests) {
  auto t0 = Clock::now();
  std::vector<uint64_t> fetch, zero;  // fetch: the demanded pages first, then neighbours
  std::unordered_set<uint64_t> wanted;
  uint64_t duplicates = 0;
  size_t demanded = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& r : requests) {
      uint64_t g;
      if (!backend_->FaultGfn(r, &g) || !wanted.insert(g).second) continue;
      switch (states_.Get(g)) {
        case PageState::kOut: fetch.push_back(g); break;
        case PageState::kFree: zero.push_back(g); break;
        default: duplicates++; break;  // already in: Xen re-checks when it sees the answer
      }
    }
    demanded = fetch.size();
    // Neighbours of the first faults, up to one batch in all.
    size_t room = FaultBackend::kBatch > fetch.size() ? FaultBackend::kBatch - fetch.size() : 0;
    uint32_t prefetch = prefetch_.load();
    size_t want = std::min<size_t>(room, prefetch);
    std::vector<uint64_t> near;
    for (size_t i = 0; i < fetch.size() && near.size() < want; i++)
      states_.NextOut(fetch[i], want - near.size(), 4 * uint64_t(prefetch), &near);
    for (uint64_t g : near)
      if (wanted.insert(g).second) fetch.push_back(g);
    if (fetch.size() > FaultBackend::kBatch) fetch.resize(FaultBackend::kBatch);
  }

  std::vector<long> result;
  std::vector<uint64_t> installed;  // pages now in place; any other page still faults
  uint64_t zero_filled = 0, faults = 0, prefetched = 0;
  if (!zero.empty()) {
    for (size_t i = 0; i < zero.size(); i += FaultBackend::kBatch) {
      size_t n = std::min(FaultBackend::kBatch, zero.size() - i);
      InstallZeros(&zero[i], n, &result);
      for (size_t k = 0; k < n; k++) {
        if (result[k] == 0) zero_filled++, installed.push_back(zero[i + k]);
        else NoteLoadFailure(zero[i + k], result[k], true);
      }
    }
  }
  double fetch_ms = 0;
  if (!fetch.empty()) {
    fetch_ms = InstallFetched(fetch, &result);
    for (size_t k = 0; k < fetch.size(); k++) {
      if (result[k] != 0) {
        NoteLoadFailure(fetch[k], result[k], k < demanded);
        continue;
      }
      (k < demanded ? faults : prefetched)++;
      installed.push_back(fetch[k]);
    }
  }
  VmEventChannel& ring = backend_->channel();
  for (const auto& r : requests) ring.Respond(r);
  ring.Notify();

  std::lock_guard<std::mutex> lock(mu_);
  // A page that failed to go in stays out (or free): its next fault tries again.
  for (uint64_t g : installed) states_.Set(g, PageState::kIn);
  stats_.requests += requests.size();
  stats_.duplicates += duplicates;
  stats_.zero_filled += zero_filled;
  stats_.faults += faults;
  stats_.prefetched += prefetched;
  if (!fetch.empty()) {
    stats_.fetches++;
    stats_.fetched_pages += fetch.size();
    stats_.fetch_ms += fetch_ms;
  }
  double ms = MsSince(t0);
  stats_.handle_ms += ms;
  stats_.max_handle_ms = std::max(stats_.max_handle_ms, ms);
  stats_.batches++;
}

void Memtap::NoteLoadFailure(uint64_t gfn, long err, bool demanded) {
  // A vCPU retries a refused page at once: three refusals of a page it waits on are not a race.
  constexpr int kTries = 3;
  int tries = ++refused_[gfn];
  char hex[32];
  snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(gfn));
  std::string what = "domain " + std::to_string(opt_.domid) + ": gfn " + hex + " could not be loaded (" + strerror(int(-err)) + ", errno " +
                     std::to_string(-err) + ")";
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.load_failures++;
  }
  if (tries == 1) emit_({"load-failed", what + (demanded ? "" : " as a prefetched neighbour")});
  if (demanded && tries >= kTries) throw XenError("memtap", what + " " + std::to_string(tries) + " times; the clone is paused", int(-err), "");
}

void Memtap::Fetch(const std::vector<uint64_t>& gfns, uint8_t* out) {
  bool paused = false;
  for (;;) {
    try {
      if (!client_.connected()) {
        Welcome w = client_.Connect();
        if (w.image_id != image_id_)
          throw XenError("memtap", "the memserver at " + client_.address() + " now serves another memory image", ESTALE, "");
      }
      for (size_t i = 0; i < gfns.size(); i += PageClient::kMaxGet)
        client_.Get(&gfns[i], std::min(PageClient::kMaxGet, gfns.size() - i), out + i * XC_PAGE_SIZE);
      break;
    } catch (const XenError& e) {
      if (e.call() != "memserver") throw;
      if (!paused) {
        // The clone must not run on pages it cannot have: hold it until the server is back.
        Xen().xc_domain_pause(xc_.get(), opt_.domid);
        paused = true;
        {
          std::lock_guard<std::mutex> lock(mu_);
          stats_.outages++;
        }
        emit_({"memserver-lost", e.what()});
      }
      for (int i = 0; i < 10; i++) {
        if (stop_) throw StopRequested{};
        usleep(100 * 1000);
      }
    }
  }
  if (paused) {
    Xen().xc_domain_unpause(xc_.get(), opt_.domid);
    emit_({"memserver-back", client_.address()});
  }
}

}  // namespace snowflock
