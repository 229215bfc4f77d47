// What memtap knows about each guest frame of its clone. One byte per gfn: a 1 GiB guest
// costs 256 KiB here. Guarded by the caller (memtap's mutex).
#pragma once

#include <cstdint>
#include <vector>

#include "gfn_ranges.h"

namespace snowflock {

enum class PageState : uint8_t {
  kResident = 0,  // never paged out (zero in the parent, special, eager) or unknown to us
  kOut = 1,       // paged out: fetch from the memserver on first touch
  kFree = 2,      // paged out, and the clone's kernel said it was free at fork: zero-fill
  kIn = 3,        // loaded
};

class PageStates {
 public:
  void Resize(uint64_t gfns) { states_.assign(gfns, PageState::kResident); }
  PageState Get(uint64_t gfn) const { return gfn < states_.size() ? states_[gfn] : PageState::kResident; }
  void Set(uint64_t gfn, PageState s) {
    if (gfn < states_.size()) states_[gfn] = s;
  }
  uint64_t size() const { return states_.size(); }

  // Free pages still out become kFree; returns how many changed.
  uint64_t MarkFree(const std::vector<GfnRange>& ranges) {
    uint64_t n = 0;
    for (const GfnRange& r : ranges)
      for (uint64_t g = r.start; g < r.start + r.count && g < states_.size(); g++)
        if (states_[g] == PageState::kOut) {
          states_[g] = PageState::kFree;
          n++;
        }
    return n;
  }

  // Up to max gfns from *cursor on that are still to load (out or free); moves the cursor past
  // the last one looked at. Settling walks the whole table this way, a batch at a time.
  void NextUnloaded(uint64_t* cursor, size_t max, std::vector<uint64_t>* out) const {
    for (; *cursor < states_.size() && max; ++*cursor)
      if (states_[*cursor] == PageState::kOut || states_[*cursor] == PageState::kFree) {
        out->push_back(*cursor);
        max--;
      }
  }

  // Up to max gfns after `from` that are still out (not free), looking at most `window` gfns ahead:
  // guests touch memory in runs, so the neighbours of a fault are the best guess for the next.
  void NextOut(uint64_t from, size_t max, uint64_t window, std::vector<uint64_t>* out) const {
    uint64_t end = from + 1 + window;
    for (uint64_t g = from + 1; g < end && g < states_.size() && max; g++)
      if (states_[g] == PageState::kOut) {
        out->push_back(g);
        max--;
      }
  }

 private:
  std::vector<PageState> states_;
};

}  // namespace snowflock
