// PV guests travel through libxenguest's migration stream (v2). xc_domain_save writes page
// tables, CR3, GDT frames and the p2m list canonicalised to pseudo-physical frame numbers, as
// SnowFlock's PV descriptor did by hand, and xc_domain_restore localises them into a fresh
// domain (pins the tables, rewrites the guest's p2m, patches start_info, seeds the grant
// table). PV has no HAP, so mem_paging cannot serve it: PV clones are always eager.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "domain_builder.h"
#include "xen_headers.h"

namespace snowflock {

// Writes the stream of a domain that is already suspended (cooperatively) and paused.
void SavePvStream(xc_interface* xch, uint32_t domid, const std::string& path);

struct PvRestoreSpec {
  std::array<uint8_t, 16> handle{};  // the clone's UUID
  uint32_t max_vcpus = 1;
  uint64_t max_pages = 0;
  // The stream is head + image[image_offset, image_offset + image_length) + tail: the
  // descriptor keeps everything but the page data, the memory image the page data.
  std::vector<uint8_t> head, tail;
  std::string image;
  uint64_t image_offset = 0, image_length = 0;
};

// Creates a PV domain and restores the stream into it; left paused. A failure destroys it.
BuildResult RestorePvStream(xc_interface* xch, const PvRestoreSpec& spec);

}  // namespace snowflock
