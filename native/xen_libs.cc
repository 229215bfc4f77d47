#include "xen_libs.h"

#include <dlfcn.h>
#include <link.h>

#include <mutex>

#include "xen_error.h"

namespace snowflock {

namespace {

// Sonames of Debian 12's Xen 4.17 packages first, then the unversioned development names.
struct LibraryName {
  const char* soname;
  const char* fallback;
};
constexpr LibraryName kLibraries[] = {
    {"libxenctrl.so.4.17", "libxenctrl.so"},
    {"libxenguest.so.4.17", "libxenguest.so"},
    {"libxencall.so.1", "libxencall.so"},
    {"libxenforeignmemory.so.1", "libxenforeignmemory.so"},
    {"libxenevtchn.so.1", "libxenevtchn.so"},
    {"libxengnttab.so.1", "libxengnttab.so"},
    {"libxenstore.so.4", "libxenstore.so"},
    {"libxenvchan.so.4.17", "libxenvchan.so"},
};

struct Loader {
  XenLibs libs;
  std::vector<LoadedLibrary> loaded;
  std::vector<void*> handles;
  std::string failure;  // empty when every library and symbol resolved
};

void* OpenOne(const LibraryName& name, LoadedLibrary& out) {
  out.name = name.soname;
  void* handle = dlopen(name.soname, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    out.error = dlerror();
    handle = dlopen(name.fallback, RTLD_NOW | RTLD_LOCAL);
  }
  if (!handle) return nullptr;
  out.error.clear();
  struct link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name) out.path = map->l_name;
  return handle;
}

template <typename Fn>
void Resolve(Loader& loader, Fn& slot, const char* symbol) {
  for (void* handle : loader.handles) {
    if (void* sym = dlsym(handle, symbol)) {
      slot = reinterpret_cast<Fn>(sym);
      return;
    }
  }
  if (loader.failure.empty()) loader.failure = std::string("symbol ") + symbol + " not found in the Xen libraries";
}

Loader& Load() {
  static Loader loader;
  static std::once_flag once;
  std::call_once(once, [] {
    for (const auto& name : kLibraries) {
      LoadedLibrary lib;
      if (void* handle = OpenOne(name, lib)) {
        loader.handles.push_back(handle);
      } else if (loader.failure.empty()) {
        loader.failure = "Xen library " + std::string(name.soname) + " is not installed (" + lib.error +
                         "); on Debian install the libxenmisc4.17 and libxen* packages";
      }
      loader.loaded.push_back(lib);
    }
    if (!loader.failure.empty()) return;
    auto& l = loader.libs;
#define SF_RESOLVE(name) Resolve(loader, l.name, #name)
    SF_RESOLVE(xc_interface_open);
    SF_RESOLVE(xc_interface_close);
    SF_RESOLVE(xc_version);
    SF_RESOLVE(xc_physinfo);
    SF_RESOLVE(xc_domain_getinfolist);
    SF_RESOLVE(xc_domain_pause);
    SF_RESOLVE(xc_domain_unpause);
    SF_RESOLVE(xc_domain_destroy);
    SF_RESOLVE(xc_domain_create);
    SF_RESOLVE(xc_domain_max_vcpus);
    SF_RESOLVE(xc_domain_setmaxmem);
    SF_RESOLVE(xc_domain_populate_physmap_exact);
    SF_RESOLVE(xc_domain_populate_physmap);
    SF_RESOLVE(xc_hvm_param_set);
    SF_RESOLVE(xc_mem_paging_enable);
    SF_RESOLVE(xc_mem_paging_disable);
    SF_RESOLVE(xc_memshr_control);
    SF_RESOLVE(xc_set_mem_access);
    SF_RESOLVE(xc_monitor_enable);
    SF_RESOLVE(xc_monitor_disable);
    SF_RESOLVE(xc_domain_hvm_getcontext);
    SF_RESOLVE(xc_domain_hvm_setcontext);
    SF_RESOLVE(xc_hvm_param_get);
    SF_RESOLVE(xc_get_paging_mempool_size);
    SF_RESOLVE(xc_set_paging_mempool_size);
    SF_RESOLVE(xc_domain_get_tsc_info);
    SF_RESOLVE(xc_domain_set_tsc_info);
    SF_RESOLVE(xc_domain_maximum_gpfn);
    SF_RESOLVE(xc_evtchn_alloc_unbound);
    SF_RESOLVE(xc_domain_sethandle);
    SF_RESOLVE(xc_domain_decrease_reservation_exact);
    SF_RESOLVE(xc_domain_resume);
    SF_RESOLVE(xc_dom_gnttab_seed);
    SF_RESOLVE(xc_domain_save);
    SF_RESOLVE(xc_domain_restore);
    SF_RESOLVE(xc_cpu_policy_init);
    SF_RESOLVE(xc_cpu_policy_destroy);
    SF_RESOLVE(xc_cpu_policy_get_domain);
    SF_RESOLVE(xc_cpu_policy_set_domain);
    SF_RESOLVE(xc_cpu_policy_serialise);
    SF_RESOLVE(xc_cpu_policy_update_cpuid);
    SF_RESOLVE(xc_cpu_policy_update_msrs);
    SF_RESOLVE(xencall_open);
    SF_RESOLVE(xencall_close);
    SF_RESOLVE(xencall2);
    SF_RESOLVE(xencall_alloc_buffer);
    SF_RESOLVE(xencall_free_buffer);
    SF_RESOLVE(xencall_alloc_buffer_pages);
    SF_RESOLVE(xencall_free_buffer_pages);
    SF_RESOLVE(xenforeignmemory_open);
    SF_RESOLVE(xenforeignmemory_close);
    SF_RESOLVE(xenforeignmemory_map);
    SF_RESOLVE(xenforeignmemory_unmap);
    SF_RESOLVE(xenevtchn_open);
    SF_RESOLVE(xenevtchn_close);
    SF_RESOLVE(xenevtchn_fd);
    SF_RESOLVE(xenevtchn_pending);
    SF_RESOLVE(xenevtchn_unmask);
    SF_RESOLVE(xenevtchn_notify);
    SF_RESOLVE(xenevtchn_bind_interdomain);
    SF_RESOLVE(xenevtchn_unbind);
    SF_RESOLVE(xengnttab_open);
    SF_RESOLVE(xengnttab_close);
    SF_RESOLVE(xs_open);
    SF_RESOLVE(xs_close);
    SF_RESOLVE(xs_read);
    SF_RESOLVE(xs_write);
    SF_RESOLVE(xs_mkdir);
    SF_RESOLVE(xs_rm);
    SF_RESOLVE(xs_directory);
    SF_RESOLVE(xs_set_permissions);
    SF_RESOLVE(xs_introduce_domain);
    SF_RESOLVE(xs_release_domain);
    SF_RESOLVE(xs_resume_domain);
    SF_RESOLVE(xs_watch);
    SF_RESOLVE(xs_unwatch);
    SF_RESOLVE(xs_fileno);
    SF_RESOLVE(xs_check_watch);
#undef SF_RESOLVE
  });
  return loader;
}

// Set only by OverrideXenLibsForTest.
const XenLibs* test_override = nullptr;

}  // namespace

const XenLibs& Xen() {
  if (test_override) return *test_override;
  Loader& loader = Load();
  if (!loader.failure.empty()) ThrowUnavailable(loader.failure);
  return loader.libs;
}

void OverrideXenLibsForTest(const XenLibs& fake) {
  static XenLibs copy;
  copy = fake;
  test_override = &copy;
}

std::vector<LoadedLibrary> DescribeLibraries() { return Load().loaded; }

}  // namespace snowflock
