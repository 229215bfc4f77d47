#include "memtap_binding.h"

#include <cstring>

#include "async_work.h"
#include "build_spec.h"
#include "xen_error.h"

namespace snowflock {

namespace {

MemtapOptions ParseOptions(Napi::Env env, Napi::Object o) {
  auto number = [&](const char* name, double fallback, double max) {
    Napi::Value v = o.Get(name);
    if (v.IsUndefined()) {
      if (fallback < 0) throw Napi::TypeError::New(env, std::string("memtap: missing ") + name);
      return fallback;
    }
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (d < 0 || d > max || d != double(uint64_t(d))) throw Napi::RangeError::New(env, std::string("memtap: bad ") + name);
    return d;
  };
  MemtapOptions m;
  m.domid = uint32_t(number("domid", -1, 0x7fef));
  Napi::Value host = o.Get("host");
  if (!host.IsString()) throw Napi::TypeError::New(env, "memtap: host must be a string");
  m.host = host.As<Napi::String>();
  m.port = uint16_t(number("port", -1, 65535));
  Napi::Value token = o.Get("token");
  if (!token.IsBuffer() || token.As<Napi::Buffer<uint8_t>>().Length() != 32)
    throw Napi::TypeError::New(env, "memtap: token must be a 32-byte Buffer");
  std::memcpy(m.token.data(), token.As<Napi::Buffer<uint8_t>>().Data(), 32);
  m.vmid = uint32_t(number("vmid", -1, 0xffffffff));
  m.prefetch = uint32_t(number("prefetch", 64, 127));
  m.timeout_ms = int(number("timeoutMs", 5000, 600000));
  Napi::Value backend = o.Get("backend");
  if (!backend.IsUndefined()) {
    std::string b = backend.IsString() ? std::string(backend.As<Napi::String>()) : "";
    if (b != "paging" && b != "access") throw Napi::RangeError::New(env, "memtap: backend must be \"paging\" or \"access\"");
    m.mode = b == "access" ? FaultMode::kAccess : FaultMode::kPaging;
  }
  Napi::Value takeover = o.Get("takeover");
  if (!takeover.IsUndefined()) m.takeover = takeover.ToBoolean();
  return m;
}

Napi::Object StatsToJs(Napi::Env env, const MemtapStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("running", s.running);
  o.Set("requests", double(s.requests));
  o.Set("faults", double(s.faults));
  o.Set("prefetched", double(s.prefetched));
  o.Set("zeroFilled", double(s.zero_filled));
  o.Set("duplicates", double(s.duplicates));
  o.Set("fetches", double(s.fetches));
  o.Set("fetchedPages", double(s.fetched_pages));
  o.Set("fetchMs", s.fetch_ms);
  o.Set("handleMs", s.handle_ms);
  o.Set("maxHandleMs", s.max_handle_ms);
  o.Set("batches", double(s.batches));
  o.Set("freeMarked", double(s.free_marked));
  o.Set("outages", double(s.outages));
  o.Set("loadFailures", double(s.load_failures));
  o.Set("settleLoaded", double(s.settle_loaded));
  o.Set("settling", s.settling);
  o.Set("settled", s.settled);
  return o;
}

}  // namespace

void MemtapBinding::Register(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "Memtap",
                                   {
                                       InstanceMethod("prepare", &MemtapBinding::Prepare),
                                       InstanceMethod("start", &MemtapBinding::Start),
                                       InstanceMethod("stop", &MemtapBinding::Stop),
                                       InstanceMethod("markFree", &MemtapBinding::MarkFree),
                                       InstanceMethod("setPrefetch", &MemtapBinding::SetPrefetch),
                                       InstanceMethod("settle", &MemtapBinding::Settle),
                                       InstanceMethod("stats", &MemtapBinding::Stats),
                                       InstanceMethod("goodbye", &MemtapBinding::Goodbye),
                                   });
  exports.Set("Memtap", cls);
}

MemtapBinding::MemtapBinding(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MemtapBinding>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "new Memtap(options)");
  MemtapOptions options = ParseOptions(env, info[0].As<Napi::Object>());
  try {
    memtap_ = std::make_shared<Memtap>(std::move(options));
  } catch (const XenError& e) {
    throw e.ToJs(env);
  }
}

MemtapBinding::~MemtapBinding() {
  // The thread must not outlive the object it reports through.
  if (memtap_) memtap_->Stop();
}

Napi::Value MemtapBinding::Prepare(const Napi::CallbackInfo& info) {
  auto m = memtap_;
  return RunAsync<PrepareReport>(
      info.Env(), "snowflock.memtap.prepare", [m] { return m->Prepare(); },
      [](Napi::Env env, PrepareReport& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("xenPort", r.xen_port);
        o.Set("ringGfn", double(r.ring_gfn));
        o.Set("evicted", double(r.evicted));
        o.Set("refused", double(r.refused));
        o.Set("eager", double(r.eager));
        o.Set("welcomeMs", r.welcome_ms);
        o.Set("eagerMs", r.eager_ms);
        o.Set("evictMs", r.evict_ms);
        return o;
      });
}

Napi::Value MemtapBinding::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (started_) throw Napi::Error::New(env, "memtap already started");
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "start(onEvent)");
  events_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "snowflock.memtap.events", 0, 1);
  auto tsfn = events_;
  try {
    memtap_->Start([tsfn](const MemtapEvent& e) mutable {
      auto* copy = new MemtapEvent(e);
      tsfn.BlockingCall(copy, [](Napi::Env env, Napi::Function cb, MemtapEvent* ev) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", ev->type);
        if (!ev->message.empty()) o.Set("message", ev->message);
        delete ev;
        cb.Call({o});
      });
      // "stopped" is the last event: let the process exit once it is delivered.
      if (e.type == "stopped") tsfn.Release();
    });
  } catch (const XenError& e) {
    events_.Release();
    throw e.ToJs(env);
  }
  started_ = true;
  return env.Undefined();
}

Napi::Value MemtapBinding::Stop(const Napi::CallbackInfo& info) {
  auto m = memtap_;
  return RunAsync<bool>(
      info.Env(), "snowflock.memtap.stop",
      [m] {
        m->Stop();
        return true;
      },
      [](Napi::Env env, bool&) { return env.Undefined(); });
}

Napi::Value MemtapBinding::MarkFree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw Napi::TypeError::New(env, "markFree(ranges)");
  return Napi::Number::New(env, double(memtap_->MarkFree(ParseRanges(env, info[0]))));
}

Napi::Value MemtapBinding::SetPrefetch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setPrefetch(pages)");
  double pages = info[0].As<Napi::Number>().DoubleValue();
  if (!(pages >= 0 && pages <= 127) || pages != double(uint32_t(pages))) throw Napi::RangeError::New(env, "prefetch must be an integer 0..127");
  memtap_->SetPrefetch(uint32_t(pages));
  return env.Undefined();
}

Napi::Value MemtapBinding::Settle(const Napi::CallbackInfo& info) {
  memtap_->Settle();
  return info.Env().Undefined();
}

Napi::Value MemtapBinding::Stats(const Napi::CallbackInfo& info) { return StatsToJs(info.Env(), memtap_->Stats()); }

Napi::Value MemtapBinding::Goodbye(const Napi::CallbackInfo& info) {
  auto m = memtap_;
  return RunAsync<bool>(
      info.Env(), "snowflock.memtap.goodbye",
      [m] {
        m->SayGoodbye();
        return true;
      },
      [](Napi::Env env, bool&) { return env.Undefined(); });
}

}  // namespace snowflock
