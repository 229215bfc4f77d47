// JS class FrameCipher: one direction of the memserver's sealed frames (gcm_frames.h) for the
// memserver and the TS client (lib/memtap/secure.ts). node:crypto makes a new cipher, key
// schedule included, for every frame; this keeps one per direction and connection. Synchronous:
// sealing a full 1 MiB PAGES frame takes well under a millisecond.
#pragma once

#include <napi.h>

#include <memory>

#include "gcm_frames.h"

namespace snowflock {

class FrameCipher : public Napi::ObjectWrap<FrameCipher> {
 public:
  static void Register(Napi::Env env, Napi::Object exports);
  explicit FrameCipher(const Napi::CallbackInfo& info);

 private:
  // seal(frame, out): frame = u32 length field + body (may be empty); out = frame.length + 16 bytes, either
  // apart from frame or starting where it starts (in place). Writes the sealed frame into out.
  Napi::Value Seal(const Napi::CallbackInfo& info);
  // open(record, out): record = what follows a sealed frame's length field; out ≥ record.length
  // - 16 bytes. true when it authenticates (out holds the body), false otherwise.
  Napi::Value Open(const Napi::CallbackInfo& info);

  std::unique_ptr<GcmFrames> gcm_;
};

}  // namespace snowflock
