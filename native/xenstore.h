// The JS class XenStore: one owned connection to xenstored. Calls are short RPCs, so
// they run on the JS thread.
#pragma once

#include <napi.h>

#include "xen_headers.h"

namespace snowflock {

class XenStore : public Napi::ObjectWrap<XenStore> {
 public:
  static void Register(Napi::Env env, Napi::Object exports);
  explicit XenStore(const Napi::CallbackInfo& info);
  ~XenStore() override;

 private:
  struct xs_handle* Handle(Napi::Env env);

  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Mkdir(const Napi::CallbackInfo& info);
  Napi::Value Rm(const Napi::CallbackInfo& info);
  Napi::Value Directory(const Napi::CallbackInfo& info);
  Napi::Value SetPermissions(const Napi::CallbackInfo& info);
  Napi::Value IntroduceDomain(const Napi::CallbackInfo& info);
  Napi::Value ReleaseDomain(const Napi::CallbackInfo& info);
  Napi::Value ResumeDomain(const Napi::CallbackInfo& info);

  struct xs_handle* xsh_ = nullptr;
};

}  // namespace snowflock
