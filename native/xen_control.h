// The JS class XenControl: one libxenctrl handle and the operations on it.
#pragma once

#include <napi.h>

#include <memory>

#include "xc_handle.h"

namespace snowflock {

class XenControl : public Napi::ObjectWrap<XenControl> {
 public:
  static void Register(Napi::Env env, Napi::Object exports);
  explicit XenControl(const Napi::CallbackInfo& info);

 private:
  // Async work holds its own reference, so close() never frees a handle in use.
  std::shared_ptr<XcHandle> Handle(Napi::Env env);

  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Version(const Napi::CallbackInfo& info);
  Napi::Value PhysInfo(const Napi::CallbackInfo& info);
  Napi::Value ListDomains(const Napi::CallbackInfo& info);
  Napi::Value DomainInfo(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Unpause(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value ProbeFeatures(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value GfnHasPage(const Napi::CallbackInfo& info);
  Napi::Value CaptureState(const Napi::CallbackInfo& info);
  Napi::Value WriteMemoryImage(const Napi::CallbackInfo& info);
  Napi::Value BuildDomain(const Napi::CallbackInfo& info);
  Napi::Value SavePvStream(const Napi::CallbackInfo& info);
  Napi::Value RestorePvStream(const Napi::CallbackInfo& info);

  std::shared_ptr<XcHandle> handle_;
};

}  // namespace snowflock
