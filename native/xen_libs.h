// The Xen libraries, loaded with dlopen() on first use so that the addon loads on any
// Linux machine. Each entry point is typed from Xen's own header with decltype.
#pragma once

#include "xen_headers.h"

#include <string>
#include <vector>

namespace snowflock {

struct XenLibs {
#define SF_XEN_FN(name) decltype(&::name) name = nullptr
  // libxenctrl
  SF_XEN_FN(xc_interface_open);
  SF_XEN_FN(xc_interface_close);
  SF_XEN_FN(xc_version);
  SF_XEN_FN(xc_physinfo);
  SF_XEN_FN(xc_domain_getinfolist);
  SF_XEN_FN(xc_domain_pause);
  SF_XEN_FN(xc_domain_unpause);
  SF_XEN_FN(xc_domain_destroy);
  SF_XEN_FN(xc_domain_create);
  SF_XEN_FN(xc_domain_max_vcpus);
  SF_XEN_FN(xc_domain_setmaxmem);
  SF_XEN_FN(xc_domain_populate_physmap_exact);
  SF_XEN_FN(xc_domain_populate_physmap);
  SF_XEN_FN(xc_hvm_param_set);
  SF_XEN_FN(xc_mem_paging_enable);
  SF_XEN_FN(xc_mem_paging_disable);
  SF_XEN_FN(xc_memshr_control);
  SF_XEN_FN(xc_set_mem_access);
  SF_XEN_FN(xc_monitor_enable);
  SF_XEN_FN(xc_monitor_disable);
  SF_XEN_FN(xc_domain_hvm_getcontext);
  SF_XEN_FN(xc_domain_hvm_setcontext);
  SF_XEN_FN(xc_hvm_param_get);
  SF_XEN_FN(xc_get_paging_mempool_size);
  SF_XEN_FN(xc_set_paging_mempool_size);
  SF_XEN_FN(xc_domain_get_tsc_info);
  SF_XEN_FN(xc_domain_set_tsc_info);
  SF_XEN_FN(xc_domain_maximum_gpfn);
  SF_XEN_FN(xc_evtchn_alloc_unbound);
  SF_XEN_FN(xc_domain_sethandle);
  SF_XEN_FN(xc_domain_decrease_reservation_exact);
  // libxenguest
  SF_XEN_FN(xc_domain_resume);
  SF_XEN_FN(xc_dom_gnttab_seed);
  SF_XEN_FN(xc_domain_save);
  SF_XEN_FN(xc_domain_restore);
  SF_XEN_FN(xc_cpu_policy_init);
  SF_XEN_FN(xc_cpu_policy_destroy);
  SF_XEN_FN(xc_cpu_policy_get_domain);
  SF_XEN_FN(xc_cpu_policy_set_domain);
  SF_XEN_FN(xc_cpu_policy_serialise);
  SF_XEN_FN(xc_cpu_policy_update_cpuid);
  SF_XEN_FN(xc_cpu_policy_update_msrs);
  // libxencall: multicalls of paging ops from one preallocated hypercall buffer
  SF_XEN_FN(xencall_open);
  SF_XEN_FN(xencall_close);
  SF_XEN_FN(xencall2);
  SF_XEN_FN(xencall_alloc_buffer);
  SF_XEN_FN(xencall_free_buffer);
  SF_XEN_FN(xencall_alloc_buffer_pages);
  SF_XEN_FN(xencall_free_buffer_pages);
  // libxenforeignmemory, libxenevtchn, libxengnttab, libxenstore
  SF_XEN_FN(xenforeignmemory_open);
  SF_XEN_FN(xenforeignmemory_close);
  SF_XEN_FN(xenforeignmemory_map);
  SF_XEN_FN(xenforeignmemory_unmap);
  SF_XEN_FN(xenevtchn_open);
  SF_XEN_FN(xenevtchn_close);
  SF_XEN_FN(xenevtchn_fd);
  SF_XEN_FN(xenevtchn_pending);
  SF_XEN_FN(xenevtchn_unmask);
  SF_XEN_FN(xenevtchn_notify);
  SF_XEN_FN(xenevtchn_bind_interdomain);
  SF_XEN_FN(xenevtchn_unbind);
  SF_XEN_FN(xengnttab_open);
  SF_XEN_FN(xengnttab_close);
  SF_XEN_FN(xs_open);
  SF_XEN_FN(xs_close);
  SF_XEN_FN(xs_read);
  SF_XEN_FN(xs_write);
  SF_XEN_FN(xs_mkdir);
  SF_XEN_FN(xs_rm);
  SF_XEN_FN(xs_directory);
  SF_XEN_FN(xs_set_permissions);
  SF_XEN_FN(xs_introduce_domain);
  SF_XEN_FN(xs_release_domain);
  SF_XEN_FN(xs_resume_domain);
  SF_XEN_FN(xs_watch);
  SF_XEN_FN(xs_unwatch);
  SF_XEN_FN(xs_fileno);
  SF_XEN_FN(xs_check_watch);
#undef SF_XEN_FN
};

struct LoadedLibrary {
  std::string name;     // the soname asked for, e.g. libxenctrl.so.4.17
  std::string path;     // the file it resolved to, or "" when it did not load
  std::string error;    // dlerror() when it did not load
};

// Loads every library on first call; throws XenError (unavailable) naming the missing
// library or symbol when Xen's user-space libraries are not installed.
const XenLibs& Xen();

// For native unit tests (native/test/) only: from now on Xen() returns a copy of `fake`
// and loads nothing, so code behind Xen() runs against fakes on a machine without Xen.
// Call before anything uses Xen(); it is not synchronised with callers on other threads.
void OverrideXenLibsForTest(const XenLibs& fake);

// What was (or could not be) loaded, for `snowflock doctor`. Never throws.
std::vector<LoadedLibrary> DescribeLibraries();

}  // namespace snowflock
