#include "build_spec.h"

#include <cstring>

namespace snowflock {

namespace {

Napi::Value Field(Napi::Env env, Napi::Object o, const char* name) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) throw Napi::TypeError::New(env, std::string("build spec: missing ") + name);
  return v;
}

double Number(Napi::Env env, Napi::Object o, const char* name) {
  Napi::Value v = Field(env, o, name);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("build spec: ") + name + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

uint64_t Big(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsBigInt()) throw Napi::TypeError::New(env, std::string("build spec: ") + name + " must be a bigint");
  bool lossless = true;
  uint64_t out = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw Napi::RangeError::New(env, std::string("build spec: ") + name + " out of range");
  return out;
}

template <typename T>
std::vector<T> Records(Napi::Env env, Napi::Object o, const char* name) {
  Napi::Value v = Field(env, o, name);
  if (!v.IsBuffer()) throw Napi::TypeError::New(env, std::string("build spec: ") + name + " must be a Buffer");
  auto b = v.As<Napi::Buffer<uint8_t>>();
  if (b.Length() % sizeof(T)) throw Napi::RangeError::New(env, std::string("build spec: ") + name + " has a partial record");
  std::vector<T> out(b.Length() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), b.Data(), b.Length());
  return out;
}

}  // namespace

std::vector<GfnRange> ParseRanges(Napi::Env env, Napi::Value v) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, "populated ranges must be an array of [start, count]");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<GfnRange> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Array r = a.Get(i).As<Napi::Array>();
    out.push_back({uint64_t(r.Get(uint32_t(0)).As<Napi::Number>().DoubleValue()),
                   uint64_t(r.Get(uint32_t(1)).As<Napi::Number>().DoubleValue())});
  }
  return out;
}

BuildSpec ParseBuildSpec(Napi::Env env, Napi::Object o) {
  BuildSpec s;
  auto handle = Records<uint8_t>(env, o, "handle");
  if (handle.size() != 16) throw Napi::RangeError::New(env, "build spec: handle must be 16 bytes");
  std::memcpy(s.handle.data(), handle.data(), 16);
  s.hap = Field(env, o, "hap").ToBoolean();
  s.max_vcpus = uint32_t(Number(env, o, "maxVcpus"));
  s.emulation_flags = uint32_t(Number(env, o, "emulationFlags"));
  s.max_pages = uint64_t(Number(env, o, "maxPages"));
  s.paging_pool_bytes = uint64_t(Number(env, o, "pagingPoolBytes"));
  Napi::Object tsc = Field(env, o, "tsc").As<Napi::Object>();
  s.tsc_mode = uint32_t(Number(env, tsc, "mode"));
  s.elapsed_nsec = Big(env, Field(env, tsc, "elapsedNsec"), "tsc.elapsedNsec");
  s.gtsc_khz = uint32_t(Number(env, tsc, "gtscKhz"));
  s.incarnation = uint32_t(Number(env, tsc, "incarnation"));
  s.cpuid = Records<xen_cpuid_leaf_t>(env, o, "cpuid");
  s.msrs = Records<xen_msr_entry_t>(env, o, "msrs");
  s.hvm_context = Records<uint8_t>(env, o, "hvmContext");
  Napi::Array params = Field(env, o, "params").As<Napi::Array>();
  for (uint32_t i = 0; i < params.Length(); i++) {
    Napi::Array pair = params.Get(i).As<Napi::Array>();
    s.params.emplace_back(pair.Get(uint32_t(0)).As<Napi::Number>().Uint32Value(), Big(env, pair.Get(uint32_t(1)), "param value"));
  }
  s.populated = ParseRanges(env, Field(env, o, "populated"));
  Napi::Array special = Field(env, o, "special").As<Napi::Array>();
  for (uint32_t i = 0; i < special.Length(); i++) {
    Napi::Object p = special.Get(i).As<Napi::Object>();
    auto data = Records<uint8_t>(env, p, "data");
    if (data.size() != XC_PAGE_SIZE) throw Napi::RangeError::New(env, "build spec: a special page must be 4096 bytes");
    s.special.push_back({uint32_t(Number(env, p, "param")), uint64_t(Number(env, p, "gfn")), std::move(data)});
  }
  Napi::Value image = o.Get("memoryImage");
  if (image.IsString()) s.memory_image = image.As<Napi::String>();
  Napi::Value offset = o.Get("imageOffset");
  if (offset.IsNumber()) s.image_offset = uint64_t(offset.As<Napi::Number>().DoubleValue());
  return s;
}

PvRestoreSpec ParsePvRestoreSpec(Napi::Env env, Napi::Object o) {
  PvRestoreSpec s;
  auto handle = Records<uint8_t>(env, o, "handle");
  if (handle.size() != 16) throw Napi::RangeError::New(env, "build spec: handle must be 16 bytes");
  std::memcpy(s.handle.data(), handle.data(), 16);
  s.max_vcpus = uint32_t(Number(env, o, "maxVcpus"));
  s.max_pages = uint64_t(Number(env, o, "maxPages"));
  s.head = Records<uint8_t>(env, o, "head");
  s.tail = Records<uint8_t>(env, o, "tail");
  Napi::Value image = Field(env, o, "image");
  if (!image.IsString()) throw Napi::TypeError::New(env, "build spec: image must be a path");
  s.image = image.As<Napi::String>();
  s.image_offset = uint64_t(Number(env, o, "imageOffset"));
  s.image_length = uint64_t(Number(env, o, "imageLength"));
  return s;
}

}  // namespace snowflock
