#include "domain_state.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>

#ifndef SNOWFLOCK_WITHOUT_JS
#include "domains.h"
#else  // the native tests build without Node, and domains.h brings it in
namespace snowflock {
xc_domaininfo_t DomainInfo(xc_interface* xch, uint32_t domid);
}
#endif
#include "foreign_memory.h"
#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

constexpr uint64_t kSpecialRegionStart = 0xfc000;  // where Xen's toolstack puts HVM special pages
constexpr uint64_t kFourGiB = 0x100000;
constexpr size_t kScanBatch = 16384;  // mostly holes: large batches
constexpr size_t kCopyBatch = 1024;    // 4 MiB of mapping at a time
// Room above a domain's RAM for holes and what the guest maps there (grant frames and the like).
constexpr uint64_t kHighSlack = 0x100000;  // 4 GiB of gfns

std::string Subject(uint32_t domid) { return "domain " + std::to_string(domid); }

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Scans running now, and the domains whose scans were asked to stop.
std::mutex scans_mutex;
int scans_running = 0;
std::set<uint32_t> scans_cancelled;

// One of kMaxConcurrentScans places, or EBUSY: a scan occupies one of the addon's few worker
// threads, and waiting for a place would occupy one too.
class ScanSlot {
 public:
  explicit ScanSlot(uint32_t domid) : domid_(domid) {
    std::lock_guard<std::mutex> lock(scans_mutex);
    if (scans_running >= kMaxConcurrentScans)
      throw XenError("snowflock", Subject(domid) + ": " + std::to_string(kMaxConcurrentScans) +
                     " captures are scanning guest memory already; try again when one is done", EBUSY, "");
    scans_running++;
    scans_cancelled.erase(domid);
  }
  ~ScanSlot() {
    std::lock_guard<std::mutex> lock(scans_mutex);
    scans_running--;
    scans_cancelled.erase(domid_);
  }
  ScanSlot(const ScanSlot&) = delete;
  ScanSlot& operator=(const ScanSlot&) = delete;

 private:
  uint32_t domid_;
};

bool ScanCancelled(uint32_t domid) {
  std::lock_guard<std::mutex> lock(scans_mutex);
  return scans_cancelled.count(domid) != 0;
}

}  // namespace

uint64_t ScanLimit(uint64_t max_pages) { return kFourGiB + max_pages + kHighSlack; }

std::vector<GfnRange> ScanPopulated(ForeignMemory& fmem, uint32_t domid, uint64_t max_pages, uint64_t max_gpfn,
                                    const std::function<bool()>& keep_going) {
  // The guest can raise its highest gfn (by mapping something there), and every gfn up to it
  // would be probed: refuse what no memory of max_pages could reach, before mapping anything.
  if (max_gpfn >= ScanLimit(max_pages))
    throw XenError("snowflock", Subject(domid) + " has gfn " + Hex(max_gpfn) + " mapped, beyond " + Hex(ScanLimit(max_pages) - 1) +
                   ", the highest its " + std::to_string(max_pages) + " pages can reach with room for holes; a guest can raise its " +
                   "highest gfn, so capture does not scan that far", E2BIG, "");
  ScanSlot slot(domid);
  std::vector<GfnRange> candidates;
  uint64_t low_end = std::min({max_pages + 0x1000, max_gpfn + 1, kSpecialRegionStart});
  candidates.push_back({0, low_end});
  if (max_gpfn >= kSpecialRegionStart) candidates.push_back({kSpecialRegionStart, std::min(max_gpfn + 1, kFourGiB) - kSpecialRegionStart});
  if (max_gpfn >= kFourGiB) candidates.push_back({kFourGiB, max_gpfn + 1 - kFourGiB});

  std::vector<GfnRange> populated;
  ForEachGfnBatch(candidates, kScanBatch, [&](const std::vector<xen_pfn_t>& gfns) {
    if (!keep_going() || ScanCancelled(domid))
      throw XenError("snowflock", Subject(domid) + ": the scan of its memory was cancelled", ECANCELED, "");
    ForeignMapping m = fmem.Map(domid, PROT_READ, gfns, true);
    for (size_t i = 0; i < gfns.size(); i++) {
      if (m.error(i)) continue;
      if (!populated.empty() && populated.back().start + populated.back().count == gfns[i]) populated.back().count++;
      else populated.push_back({gfns[i], 1});
    }
  });
  return populated;
}

void CancelDomainScans(uint32_t domid) {
  std::lock_guard<std::mutex> lock(scans_mutex);
  scans_cancelled.insert(domid);
}

namespace {

bool IsPopulated(const std::vector<GfnRange>& ranges, uint64_t gfn) {
  for (const GfnRange& r : ranges)
    if (gfn >= r.start && gfn < r.start + r.count) return true;
  return false;
}

}  // namespace

DomainState CaptureDomainState(xc_interface* xch, uint32_t domid) {
  const XenLibs& xen = Xen();
  DomainState s;
  s.info = DomainInfo(xch, domid);
  if (!(s.info.flags & XEN_DOMINF_hvm_guest))
    throw XenError("snowflock", Subject(domid) + " is a PV guest; descriptors support PVH and HVM guests", EOPNOTSUPP, "");
  if (!(s.info.flags & (XEN_DOMINF_paused | XEN_DOMINF_shutdown)))
    throw XenError("snowflock", Subject(domid) + " is running; pause or suspend it first", EBUSY, "");

  ClearXenLog();
  int size = xen.xc_domain_hvm_getcontext(xch, domid, nullptr, 0);
  if (size <= 0) ThrowXenError("xc_domain_hvm_getcontext", Subject(domid) + " (size)");
  s.hvm_context.resize(size_t(size));
  size = xen.xc_domain_hvm_getcontext(xch, domid, s.hvm_context.data(), uint32_t(s.hvm_context.size()));
  if (size <= 0) ThrowXenError("xc_domain_hvm_getcontext", Subject(domid));
  s.hvm_context.resize(size_t(size));

  for (uint32_t p = 0; p < HVM_NR_PARAMS; p++) {
    uint64_t v = 0;
    // Some params are write-only or absent on this build: skip what cannot be read.
    if (xen.xc_hvm_param_get(xch, domid, p, &v) == 0 && v != 0) s.params.emplace_back(p, v);
  }
  TakeXenLog();

  xc_cpu_policy_t* policy = xen.xc_cpu_policy_init();
  if (!policy) ThrowXenError("xc_cpu_policy_init", "");
  try {
    if (xen.xc_cpu_policy_get_domain(xch, domid, policy)) ThrowXenError("xc_cpu_policy_get_domain", Subject(domid));
    uint32_t nr_leaves = 1024, nr_msrs = 256;
    s.cpuid.resize(nr_leaves);
    s.msrs.resize(nr_msrs);
    if (xen.xc_cpu_policy_serialise(xch, policy, s.cpuid.data(), &nr_leaves, s.msrs.data(), &nr_msrs))
      ThrowXenError("xc_cpu_policy_serialise", Subject(domid));
    s.cpuid.resize(nr_leaves);
    s.msrs.resize(nr_msrs);
  } catch (...) {
    xen.xc_cpu_policy_destroy(policy);
    throw;
  }
  xen.xc_cpu_policy_destroy(policy);

  if (xen.xc_domain_get_tsc_info(xch, domid, &s.tsc_mode, &s.elapsed_nsec, &s.gtsc_khz, &s.incarnation))
    ThrowXenError("xc_domain_get_tsc_info", Subject(domid));
  if (xen.xc_get_paging_mempool_size(xch, domid, &s.paging_pool_bytes))
    ThrowXenError("xc_get_paging_mempool_size", Subject(domid));
  xen_pfn_t max_gpfn = 0;
  if (xen.xc_domain_maximum_gpfn(xch, domid, &max_gpfn) < 0) ThrowXenError("xc_domain_maximum_gpfn", Subject(domid));
  s.max_gpfn = max_gpfn;

  ForeignMemory fmem;
  s.populated = ScanPopulated(fmem, domid, s.info.max_pages, s.max_gpfn, [] { return true; });

  // Pages shared between the guest and the toolstack travel inside the descriptor.
  static constexpr uint32_t kSpecialParams[] = {HVM_PARAM_STORE_PFN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_IDENT_PT,
                                                HVM_PARAM_IOREQ_PFN, HVM_PARAM_BUFIOREQ_PFN};
  for (const auto& [param, value] : s.params) {
    if (std::find(std::begin(kSpecialParams), std::end(kSpecialParams), param) == std::end(kSpecialParams)) continue;
    uint64_t gfn = param == HVM_PARAM_IDENT_PT ? value >> XC_PAGE_SHIFT : value;
    if (!IsPopulated(s.populated, gfn)) continue;
    ForeignMapping m = fmem.Map(domid, PROT_READ, {xen_pfn_t(gfn)}, false);
    s.special.push_back({param, gfn, std::vector<uint8_t>(m.page(0), m.page(0) + XC_PAGE_SIZE)});
  }
  return s;
}

namespace {
void WriteAll(int fd, const uint8_t* data, size_t bytes, const std::string& path) {
  for (size_t done = 0; done < bytes;) {
    ssize_t w = write(fd, data + done, bytes - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) ThrowXenError("write", path);  // ENOSPC names a full disk
    done += size_t(w);
  }
}
}  // namespace

uint64_t WriteMemoryImage(uint32_t domid, const std::vector<GfnRange>& populated, const std::string& path,
                          const std::vector<uint8_t>& header) {
  ForeignMemory fmem;
  // The guest's whole memory: owner-only (also when an older file is truncated), and never
  // written through a symbolic link planted at the path.
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) ThrowXenError("open", path);
  if (fchmod(fd, 0600) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    ThrowXenError("fchmod", path);
  }
  uint64_t written = 0;
  try {
    WriteAll(fd, header.data(), header.size(), path);
    ForEachGfnBatch(populated, kCopyBatch, [&](const std::vector<xen_pfn_t>& gfns) {
      ForeignMapping m = fmem.Map(domid, PROT_READ, gfns, false);
      WriteAll(fd, m.page(0), gfns.size() * XC_PAGE_SIZE, path);
      written += gfns.size();
    });
    if (fsync(fd) != 0) ThrowXenError("fsync", path);
  } catch (...) {
    close(fd);
    unlink(path.c_str());
    throw;
  }
  close(fd);
  return written;
}

#ifndef SNOWFLOCK_WITHOUT_JS
Napi::Object DomainStateToJs(Napi::Env env, const DomainState& s) {
  auto bytes = [&](const void* p, size_t n) { return Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(p), n); };
  Napi::Object o = Napi::Object::New(env);
  o.Set("domain", DomainToJs(env, s.info));
  o.Set("hvmContext", bytes(s.hvm_context.data(), s.hvm_context.size()));
  Napi::Array params = Napi::Array::New(env, s.params.size());
  for (size_t i = 0; i < s.params.size(); i++) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair[uint32_t(0)] = s.params[i].first;
    pair[uint32_t(1)] = Napi::BigInt::New(env, s.params[i].second);
    params[uint32_t(i)] = pair;
  }
  o.Set("params", params);
  o.Set("cpuid", bytes(s.cpuid.data(), s.cpuid.size() * sizeof(xen_cpuid_leaf_t)));
  o.Set("msrs", bytes(s.msrs.data(), s.msrs.size() * sizeof(xen_msr_entry_t)));
  Napi::Object tsc = Napi::Object::New(env);
  tsc.Set("mode", s.tsc_mode);
  tsc.Set("elapsedNsec", Napi::BigInt::New(env, s.elapsed_nsec));
  tsc.Set("gtscKhz", s.gtsc_khz);
  tsc.Set("incarnation", s.incarnation);
  o.Set("tsc", tsc);
  o.Set("pagingPoolBytes", double(s.paging_pool_bytes));
  o.Set("maxGpfn", double(s.max_gpfn));
  o.Set("maxPages", double(s.info.max_pages));
  o.Set("maxVcpus", s.info.max_vcpu_id + 1);
  o.Set("emulationFlags", s.info.arch_config.emulation_flags);
  o.Set("hap", bool(s.info.flags & XEN_DOMINF_hap));
  Napi::Array ranges = Napi::Array::New(env, s.populated.size());
  for (size_t i = 0; i < s.populated.size(); i++) {
    Napi::Array r = Napi::Array::New(env, 2);
    r[uint32_t(0)] = double(s.populated[i].start);
    r[uint32_t(1)] = double(s.populated[i].count);
    ranges[uint32_t(i)] = r;
  }
  o.Set("populated", ranges);
  Napi::Array special = Napi::Array::New(env, s.special.size());
  for (size_t i = 0; i < s.special.size(); i++) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("param", s.special[i].param);
    p.Set("gfn", double(s.special[i].gfn));
    p.Set("data", bytes(s.special[i].data.data(), s.special[i].data.size()));
    special[uint32_t(i)] = p;
  }
  o.Set("special", special);
  return o;
}
#endif  // SNOWFLOCK_WITHOUT_JS

}  // namespace snowflock
