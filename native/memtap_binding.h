// JS class Memtap: one clone's memory-on-demand engine (see memtap.h). Blocking steps run
// off the JS thread; fault-loop events arrive on the callback given to start().
#pragma once

#include <napi.h>

#include <memory>

#include "memtap.h"

namespace snowflock {

class MemtapBinding : public Napi::ObjectWrap<MemtapBinding> {
 public:
  static void Register(Napi::Env env, Napi::Object exports);
  explicit MemtapBinding(const Napi::CallbackInfo& info);
  ~MemtapBinding();

 private:
  Napi::Value Prepare(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value MarkFree(const Napi::CallbackInfo& info);
  Napi::Value SetPrefetch(const Napi::CallbackInfo& info);
  Napi::Value Settle(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Goodbye(const Napi::CallbackInfo& info);

  std::shared_ptr<Memtap> memtap_;
  Napi::ThreadSafeFunction events_;
  bool started_ = false;
};

}  // namespace snowflock
