// memtap: gives a clone its memory on demand. Prepare() turns a freshly built, paused clone
// into one whose pages are out (fault_backend.h: paged out, or access-restricted) (loading the few it needs before it runs); Start() runs the
// fault loop on its own thread: each paging request is answered with the page from the
// memserver (or zeros, for a page the clone's kernel reported free), plus a few neighbours.
// If the memserver is lost, the clone is paused, not fed garbage, until it comes back.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "page_client.h"
#include "page_table_state.h"
#include "fault_backend.h"
#include "xc_handle.h"

namespace snowflock {

struct MemtapOptions {
  uint32_t domid = 0;
  std::string host;
  uint16_t port = 0;
  std::array<uint8_t, 32> token{};
  uint32_t vmid = 0;
  uint32_t prefetch = 64;     // neighbours loaded with each fault
  int timeout_ms = 5000;      // per memserver request
  FaultMode mode = FaultMode::kPaging;
  bool takeover = false;      // replace the ring of a memtap that ended with a fresh one
};

struct PrepareReport {
  uint32_t xen_port = 0;
  uint64_t ring_gfn = 0;
  uint64_t evicted = 0, refused = 0, eager = 0;
  double welcome_ms = 0, eager_ms = 0, evict_ms = 0;
};

struct MemtapStats {
  uint64_t requests = 0;      // paging requests taken from the ring
  uint64_t faults = 0;        // pages loaded because the guest touched them
  uint64_t prefetched = 0;    // neighbours loaded with them
  uint64_t zero_filled = 0;   // free-at-fork pages given zeros without a fetch
  uint64_t duplicates = 0;    // requests for a page already loaded
  uint64_t fetches = 0;       // memserver round trips
  uint64_t fetched_pages = 0;
  double fetch_ms = 0;        // total time in memserver round trips
  double handle_ms = 0;       // total time from taking requests to answering them
  double max_handle_ms = 0;
  uint64_t batches = 0;       // ring wake-ups that had requests
  uint64_t free_marked = 0;   // pages switched to zero-fill by MarkFree
  uint64_t outages = 0;       // times the clone was paused because the memserver was lost
  uint64_t load_failures = 0; // pages Xen refused to take (each one reported as a "load-failed" event)
  uint64_t settle_loaded = 0; // pages loaded by settling rather than by faults
  bool settling = false;      // Settle() was asked for and is not done
  bool settled = false;       // every page is in and memtap has left the clone
  bool running = false;
};

struct MemtapEvent {
  std::string type;  // "memserver-lost", "memserver-back", "load-failed", "settled", "stopped", "failed"
  std::string message;
};

class Memtap {
 public:
  explicit Memtap(MemtapOptions options);
  ~Memtap();
  Memtap(const Memtap&) = delete;
  Memtap& operator=(const Memtap&) = delete;

  // Fresh clone (paused): hello, paging ring, eager pages, page-out. With takeover: hello
  // and ring only. Blocking; call off the JS thread.
  PrepareReport Prepare();
  void Start(std::function<void(const MemtapEvent&)> emit);
  void Stop();  // joins the thread; the ring stays for a successor
  uint64_t MarkFree(const std::vector<GfnRange>& ranges);
  // Neighbours loaded with each fault from now on (at most 127).
  void SetPrefetch(uint32_t pages);
  // Loads every page the clone has not touched, between its faults, then leaves the clone:
  // the ring is closed and removed, and the loop ends with a "settled" event. The clone is
  // then an ordinary domain, independent of the memserver.
  void Settle();
  MemtapStats Stats();
  // Tells the memserver this clone is finished (after the domain is gone).
  void SayGoodbye();

 private:
  void Loop();
  void Serve(std::vector<vm_event_request_t>& requests);
  void Fetch(const std::vector<uint64_t>& gfns, uint8_t* out);
  void PageOut(const Welcome& w, PrepareReport* report);
  void LoadEager(const Welcome& w);
  // Puts zeros, or the memserver's copies, at up to kBatch gfns; result[i] as Install gives it.
  void InstallZeros(const uint64_t* gfns, size_t n, std::vector<long>* result);
  // Returns the ms spent fetching.
  double InstallFetched(const std::vector<uint64_t>& gfns, std::vector<long>* result);
  // Loads the next batch of pages the clone has not touched; false when none is left.
  bool SettleStep();
  // Reports a page Xen refused to take; a page the guest waits on that keeps being refused
  // ends the loop (the clone is paused) instead of leaving a vCPU faulting forever.
  void NoteLoadFailure(uint64_t gfn, long err, bool demanded);

  MemtapOptions opt_;
  XcHandle xc_;
  std::unique_ptr<FaultBackend> backend_;
  PageClient client_;
  std::mutex mu_;  // guards states_ and stats_
  PageStates states_;
  MemtapStats stats_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint32_t> prefetch_;
  std::function<void(const MemtapEvent&)> emit_;
  std::vector<uint8_t> fetch_buffer_;
  std::array<uint8_t, 16> image_id_{};  // the image this clone was built from
  std::atomic<bool> settle_{false};
  uint64_t settle_cursor_ = 0;  // loop thread only
  std::unordered_map<uint64_t, int> refused_;  // gfn -> failed loads so far (loop thread only)
};

}  // namespace snowflock
