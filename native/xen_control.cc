#include "xen_control.h"

#include <sys/mman.h>

#include <string>

#include "async_work.h"
#include "build_spec.h"
#include "domain_builder.h"
#include "domain_state.h"
#include "domains.h"
#include "feature_probe.h"
#include "foreign_memory.h"
#include "host_info.h"
#include "pv_stream.h"
#include "suspend_cancel.h"
#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

uint32_t DomidArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "domid must be a number");
  double v = info[0].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 0x7fef || v != double(uint32_t(v)))
    throw Napi::RangeError::New(info.Env(), "domid must be an integer in 0..32751, got " + std::to_string(v));
  return uint32_t(v);
}

// Runs f, turning a XenError into the JS error that carries call, errno and Xen's log line.
template <typename F>
auto Guard(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const XenError& e) {
    throw e.ToJs(env);
  }
}

Napi::Object FeatureToJs(Napi::Env env, const FeatureResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", r.available);
  if (!r.available) {
    o.Set("errno", r.err);
    o.Set("reason", r.reason);
    if (!r.xen_log.empty()) o.Set("xenLog", r.xen_log);
  }
  return o;
}

}  // namespace

void XenControl::Register(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "XenControl",
                                   {
                                       InstanceMethod("close", &XenControl::Close),
                                       InstanceMethod("version", &XenControl::Version),
                                       InstanceMethod("physinfo", &XenControl::PhysInfo),
                                       InstanceMethod("listDomains", &XenControl::ListDomains),
                                       InstanceMethod("domainInfo", &XenControl::DomainInfo),
                                       InstanceMethod("pause", &XenControl::Pause),
                                       InstanceMethod("unpause", &XenControl::Unpause),
                                       InstanceMethod("destroy", &XenControl::Destroy),
                                       InstanceMethod("probeFeatures", &XenControl::ProbeFeatures),
                                       InstanceMethod("resume", &XenControl::Resume),
                                       InstanceMethod("gfnHasPage", &XenControl::GfnHasPage),
                                       InstanceMethod("captureState", &XenControl::CaptureState),
                                       InstanceMethod("writeMemoryImage", &XenControl::WriteMemoryImage),
                                       InstanceMethod("buildDomain", &XenControl::BuildDomain),
                                       InstanceMethod("savePvStream", &XenControl::SavePvStream),
                                       InstanceMethod("restorePvStream", &XenControl::RestorePvStream),
                                   });
  exports.Set("XenControl", cls);
}

XenControl::XenControl(const Napi::CallbackInfo& info) : Napi::ObjectWrap<XenControl>(info) {
  handle_ = Guard(info.Env(), [] { return std::make_shared<XcHandle>(); });
}

std::shared_ptr<XcHandle> XenControl::Handle(Napi::Env env) {
  if (!handle_) throw Napi::Error::New(env, "XenControl is closed");
  return handle_;
}

Napi::Value XenControl::Close(const Napi::CallbackInfo& info) {
  handle_.reset();
  return info.Env().Undefined();
}

Napi::Value XenControl::Version(const Napi::CallbackInfo& info) {
  auto h = Handle(info.Env());
  return Guard(info.Env(), [&] { return XenVersion(info.Env(), h->get()); });
}

Napi::Value XenControl::PhysInfo(const Napi::CallbackInfo& info) {
  auto h = Handle(info.Env());
  return Guard(info.Env(), [&] { return snowflock::PhysInfo(info.Env(), h->get()); });
}

Napi::Value XenControl::ListDomains(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = Handle(env);
  auto domains = Guard(env, [&] { return snowflock::ListDomains(h->get()); });
  Napi::Array out = Napi::Array::New(env, domains.size());
  for (size_t i = 0; i < domains.size(); i++) out[uint32_t(i)] = DomainToJs(env, domains[i]);
  return out;
}

Napi::Value XenControl::DomainInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t domid = DomidArg(info);
  auto h = Handle(env);
  return DomainToJs(env, Guard(env, [&] { return snowflock::DomainInfo(h->get(), domid); }));
}

Napi::Value XenControl::Pause(const Napi::CallbackInfo& info) {
  uint32_t domid = DomidArg(info);
  auto h = Handle(info.Env());
  Guard(info.Env(), [&] { PauseDomain(h->get(), domid); });
  return info.Env().Undefined();
}

Napi::Value XenControl::Unpause(const Napi::CallbackInfo& info) {
  uint32_t domid = DomidArg(info);
  auto h = Handle(info.Env());
  Guard(info.Env(), [&] { UnpauseDomain(h->get(), domid); });
  return info.Env().Undefined();
}

Napi::Value XenControl::Destroy(const Napi::CallbackInfo& info) {
  uint32_t domid = DomidArg(info);
  auto h = Handle(info.Env());
  // Destruction waits for Xen to release the domain's memory: off the JS thread.
  return RunAsync<bool>(
      info.Env(), "snowflock.destroy",
      [h, domid] {
        DestroyDomain(h->get(), domid);
        return true;
      },
      [](Napi::Env env, bool&) { return env.Undefined(); });
}

Napi::Value XenControl::ProbeFeatures(const Napi::CallbackInfo& info) {
  auto h = Handle(info.Env());
  return RunAsync<FeatureReport>(
      info.Env(), "snowflock.probeFeatures", [h] { return snowflock::ProbeFeatures(h->get()); },
      [](Napi::Env env, FeatureReport& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("hap", r.hap);
        o.Set("memPaging", FeatureToJs(env, r.mem_paging));
        o.Set("memSharing", FeatureToJs(env, r.mem_sharing));
        o.Set("memAccess", FeatureToJs(env, r.mem_access));
        return o;
      });
}

// resume(domid, fast): fast=true cancels a cooperative suspend (the guest carries on
// where it was, see suspend_cancel.cc); fast=false lets the guest run its full resume path.
Napi::Value XenControl::Resume(const Napi::CallbackInfo& info) {
  uint32_t domid = DomidArg(info);
  bool fast = info.Length() > 1 && info[1].ToBoolean();
  auto h = Handle(info.Env());
  Guard(info.Env(), [&] {
    if (fast) return CancelSuspend(h->get(), domid);
    ClearXenLog();
    if (Xen().xc_domain_resume(h->get(), domid, 0)) ThrowXenError("xc_domain_resume", "domain " + std::to_string(domid));
  });
  return info.Env().Undefined();
}

// Whether dom0 can map the guest page at gfn: false for a gfn with no page behind it, such as a
// vm_event ring taken out of the guest's physmap. Mapping a paged-out gfn pages it in.
Napi::Value XenControl::GfnHasPage(const Napi::CallbackInfo& info) {
  uint32_t domid = DomidArg(info);
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "gfnHasPage(domid, gfn): gfn must be a number");
  auto gfn = xen_pfn_t(info[1].As<Napi::Number>().Int64Value());
  bool mapped = false;
  Guard(info.Env(), [&] {
    ForeignMemory fmem;
    mapped = fmem.Map(domid, PROT_READ, {gfn}, true).error(0) == 0;
  });
  return Napi::Boolean::New(info.Env(), mapped);
}

Napi::Value XenControl::CaptureState(const Napi::CallbackInfo& info) {
  uint32_t domid = DomidArg(info);
  auto h = Handle(info.Env());
  return RunAsync<DomainState>(
      info.Env(), "snowflock.captureState", [h, domid] { return CaptureDomainState(h->get(), domid); },
      [](Napi::Env env, DomainState& s) -> Napi::Value { return DomainStateToJs(env, s); });
}

Napi::Value XenControl::WriteMemoryImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t domid = DomidArg(info);
  if (info.Length() < 4 || !info[2].IsString() || !info[3].IsBuffer())
    throw Napi::TypeError::New(env, "writeMemoryImage(domid, ranges, path, header)");
  auto ranges = ParseRanges(env, info[1]);
  std::string path = info[2].As<Napi::String>();
  auto hb = info[3].As<Napi::Buffer<uint8_t>>();
  std::vector<uint8_t> header(hb.Data(), hb.Data() + hb.Length());
  Handle(env);
  return RunAsync<uint64_t>(
      env, "snowflock.writeMemoryImage",
      [domid, ranges, path, header] { return snowflock::WriteMemoryImage(domid, ranges, path, header); },
      [](Napi::Env env, uint64_t& pages) -> Napi::Value { return Napi::Number::New(env, double(pages)); });
}

static Napi::Value BuildResultToJs(Napi::Env env, BuildResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("domid", r.domid);
  o.Set("storePort", r.store_port);
  o.Set("consolePort", r.console_port);
  o.Set("storeGfn", double(r.store_gfn));
  o.Set("consoleGfn", double(r.console_gfn));
  o.Set("pages", double(r.pages));
  o.Set("partialPopulates", r.partial_populates);
  return o;
}

Napi::Value XenControl::BuildDomain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "buildDomain(spec)");
  auto spec = std::make_shared<BuildSpec>(ParseBuildSpec(env, info[0].As<Napi::Object>()));
  auto h = Handle(env);
  return RunAsync<BuildResult>(
      env, "snowflock.buildDomain", [h, spec] { return snowflock::BuildDomain(h->get(), *spec); },
      BuildResultToJs);
}

// savePvStream(domid, path): the migration stream of a suspended, paused PV domain.
Napi::Value XenControl::SavePvStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t domid = DomidArg(info);
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(env, "savePvStream(domid, path)");
  std::string path = info[1].As<Napi::String>();
  auto h = Handle(env);
  return RunAsync<bool>(
      env, "snowflock.savePvStream", [h, domid, path] { snowflock::SavePvStream(h->get(), domid, path); return true; },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

// restorePvStream({ handle, maxVcpus, maxPages, head, tail, image, imageOffset, imageLength })
Napi::Value XenControl::RestorePvStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "restorePvStream(spec)");
  auto spec = std::make_shared<PvRestoreSpec>(ParsePvRestoreSpec(env, info[0].As<Napi::Object>()));
  auto h = Handle(env);
  return RunAsync<BuildResult>(
      env, "snowflock.restorePvStream", [h, spec] { return snowflock::RestorePvStream(h->get(), *spec); },
      BuildResultToJs);
}

}  // namespace snowflock
