#include "gcm_frames_binding.h"

#include <stdexcept>
#include <string>

namespace snowflock {

namespace {

Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsBuffer()) throw Napi::TypeError::New(info.Env(), std::string("FrameCipher: ") + what + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

// Either the same start (in place) or no overlap at all.
bool Apart(const uint8_t* a, size_t an, const uint8_t* b, size_t bn) { return a == b || a + an <= b || b + bn <= a; }

}  // namespace

void FrameCipher::Register(Napi::Env env, Napi::Object exports) {
  exports.Set("FrameCipher", DefineClass(env, "FrameCipher", {InstanceMethod<&FrameCipher::Seal>("seal"), InstanceMethod<&FrameCipher::Open>("open")}));
}

FrameCipher::FrameCipher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FrameCipher>(info) {
  Napi::Env env = info.Env();
  auto key = BufferArg(info, 0, "key");
  if (key.Length() != GcmFrames::kKeyBytes) throw Napi::RangeError::New(env, "FrameCipher: the key must be 32 bytes");
  std::string direction = info[1].IsString() ? std::string(info[1].As<Napi::String>()) : "";
  if (direction != "seal" && direction != "open") throw Napi::TypeError::New(env, "FrameCipher: direction must be \"seal\" or \"open\"");
  try {
    gcm_ = std::make_unique<GcmFrames>(key.Data(), direction == "seal" ? GcmFrames::Direction::kSeal : GcmFrames::Direction::kOpen);
  } catch (const std::runtime_error& e) {
    throw Napi::Error::New(env, std::string("FrameCipher: ") + e.what());
  }
}

Napi::Value FrameCipher::Seal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto frame = BufferArg(info, 0, "frame");
  auto out = BufferArg(info, 1, "out");
  size_t n = frame.Length();
  if (n < 4 || n - 4 > UINT32_MAX - GcmFrames::kTagBytes || out.Length() != n + GcmFrames::kTagBytes)
    throw Napi::RangeError::New(env, "FrameCipher.seal: a frame of at least its 4-byte length field and an out of its length + 16");
  if (!Apart(frame.Data(), n, out.Data(), out.Length())) throw Napi::RangeError::New(env, "FrameCipher.seal: out overlaps frame at another offset");
  uint8_t* o = out.Data();
  uint32_t length = uint32_t(n - 4 + GcmFrames::kTagBytes);
  for (int i = 0; i < 4; i++) o[i] = uint8_t(length >> (8 * i));
  if (!gcm_->Seal(o, frame.Data() + 4, n - 4, o + 4, o + n)) throw Napi::Error::New(env, "FrameCipher.seal: sealing a frame failed in OpenSSL");
  return env.Undefined();
}

Napi::Value FrameCipher::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto record = BufferArg(info, 0, "record");
  auto out = BufferArg(info, 1, "out");
  size_t n = record.Length();
  if (n < GcmFrames::kTagBytes || n > UINT32_MAX || out.Length() < n - GcmFrames::kTagBytes)
    throw Napi::RangeError::New(env, "FrameCipher.open: a record of at least 16 bytes and an out of its length - 16");
  if (!Apart(record.Data(), n, out.Data(), out.Length())) throw Napi::RangeError::New(env, "FrameCipher.open: out overlaps record at another offset");
  uint8_t head[4];
  for (int i = 0; i < 4; i++) head[i] = uint8_t(n >> (8 * i));
  size_t body = n - GcmFrames::kTagBytes;
  return Napi::Boolean::New(env, gcm_->Open(head, record.Data(), body, out.Data(), record.Data() + body));
}

}  // namespace snowflock
