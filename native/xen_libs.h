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
  SF_XEN_FN(xc_hvm_param_set);
  SF_XEN_FN(xc_mem_paging_enable);
  SF_XEN_FN(xc_mem_paging_disable);
  SF_XEN_FN(xc_memshr_control);
  SF_XEN_FN(xc_set_mem_access);
  // libxenforeignmemory, libxenevtchn, libxengnttab, libxenstore
  SF_XEN_FN(xenforeignmemory_open);
  SF_XEN_FN(xenforeignmemory_close);
  SF_XEN_FN(xenevtchn_open);
  SF_XEN_FN(xenevtchn_close);
  SF_XEN_FN(xengnttab_open);
  SF_XEN_FN(xengnttab_close);
  SF_XEN_FN(xs_open);
  SF_XEN_FN(xs_close);
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

// What was (or could not be) loaded, for `snowflock doctor`. Never throws.
std::vector<LoadedLibrary> DescribeLibraries();

}  // namespace snowflock
