// Runs blocking Xen work off the JS thread and settles a Promise with its result.
// One worker per operation; the work lambda owns (shared) whatever handles it needs.
#pragma once

#include <napi.h>

#include <functional>
#include <optional>
#include <utility>

#include "xen_error.h"

namespace snowflock {

template <typename Result>
class LambdaWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using Convert = std::function<Napi::Value(Napi::Env, Result&)>;

  LambdaWorker(Napi::Env env, const char* name, Work work, Convert convert)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), convert_(std::move(convert)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_.emplace(work_());
    } catch (const XenError& e) {
      xen_error_.emplace(e);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (xen_error_) {
      deferred_.Reject(xen_error_->ToJs(env).Value());
      return;
    }
    deferred_.Resolve(convert_(env, *result_));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Convert convert_;
  std::optional<Result> result_;
  std::optional<XenError> xen_error_;
};

template <typename Result>
Napi::Promise RunAsync(Napi::Env env, const char* name, std::function<Result()> work,
                       std::function<Napi::Value(Napi::Env, Result&)> convert) {
  auto* worker = new LambdaWorker<Result>(env, name, std::move(work), std::move(convert));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace snowflock
