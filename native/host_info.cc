#include "host_info.h"

#include <string>

#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

Napi::Value XenVersion(Napi::Env env, xc_interface* xch) {
  const XenLibs& xen = Xen();
  ClearXenLog();
  int version = xen.xc_version(xch, XENVER_version, nullptr);
  if (version < 0) ThrowXenError("xc_version", "XENVER_version");
  xen_extraversion_t extra = {};
  if (xen.xc_version(xch, XENVER_extraversion, &extra) < 0) ThrowXenError("xc_version", "XENVER_extraversion");
  xen_capabilities_info_t caps = {};
  if (xen.xc_version(xch, XENVER_capabilities, &caps) < 0) ThrowXenError("xc_version", "XENVER_capabilities");
  xen_commandline_t cmdline = {};
  if (xen.xc_version(xch, XENVER_commandline, &cmdline) < 0) ThrowXenError("xc_version", "XENVER_commandline");

  Napi::Object out = Napi::Object::New(env);
  out.Set("major", version >> 16);
  out.Set("minor", version & 0xffff);
  out.Set("extra", std::string(extra, strnlen(extra, sizeof extra)));
  out.Set("capabilities", std::string(caps, strnlen(caps, sizeof caps)));
  out.Set("commandLine", std::string(cmdline, strnlen(cmdline, sizeof cmdline)));
  return out;
}

Napi::Value PhysInfo(Napi::Env env, xc_interface* xch) {
  const XenLibs& xen = Xen();
  xc_physinfo_t info = {};
  ClearXenLog();
  if (xen.xc_physinfo(xch, &info) < 0) ThrowXenError("xc_physinfo", "");

  Napi::Object caps = Napi::Object::New(env);
  caps.Set("hvm", bool(info.capabilities & XEN_SYSCTL_PHYSCAP_hvm));
  caps.Set("pv", bool(info.capabilities & XEN_SYSCTL_PHYSCAP_pv));
  caps.Set("hap", bool(info.capabilities & XEN_SYSCTL_PHYSCAP_hap));
  caps.Set("shadow", bool(info.capabilities & XEN_SYSCTL_PHYSCAP_shadow));
  caps.Set("directio", bool(info.capabilities & XEN_SYSCTL_PHYSCAP_directio));
  caps.Set("gnttabV1", bool(info.capabilities & XEN_SYSCTL_PHYSCAP_gnttab_v1));
  caps.Set("gnttabV2", bool(info.capabilities & XEN_SYSCTL_PHYSCAP_gnttab_v2));

  Napi::Object out = Napi::Object::New(env);
  out.Set("capabilities", caps);
  out.Set("nrCpus", info.nr_cpus);
  out.Set("threadsPerCore", info.threads_per_core);
  out.Set("coresPerSocket", info.cores_per_socket);
  out.Set("nrNodes", info.nr_nodes);
  out.Set("cpuKhz", info.cpu_khz);
  out.Set("totalPages", double(info.total_pages));
  out.Set("freePages", double(info.free_pages));
  out.Set("scrubPages", double(info.scrub_pages));
  return out;
}

}  // namespace snowflock
