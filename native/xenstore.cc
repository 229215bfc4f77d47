#include "xenstore.h"

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "xen_error.h"
#include "xen_libs.h"

namespace snowflock {

namespace {

std::string PathArg(const Napi::CallbackInfo& info, size_t i = 0) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), "xenstore path must be a string");
  std::string path = info[i].As<Napi::String>();
  if (path.empty() || path.find('\0') != std::string::npos) throw Napi::TypeError::New(info.Env(), "bad xenstore path");
  return path;
}

uint32_t UintArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().Uint32Value();
}

[[noreturn]] void Fail(Napi::Env env, const char* call, const std::string& subject) {
  int err = errno;
  throw XenError(call, subject, err, TakeXenLog()).ToJs(env);
}

}  // namespace

void XenStore::Register(Napi::Env env, Napi::Object exports) {
  exports.Set("XenStore", DefineClass(env, "XenStore",
                                      {
                                          InstanceMethod("close", &XenStore::Close),
                                          InstanceMethod("read", &XenStore::Read),
                                          InstanceMethod("write", &XenStore::Write),
                                          InstanceMethod("mkdir", &XenStore::Mkdir),
                                          InstanceMethod("rm", &XenStore::Rm),
                                          InstanceMethod("directory", &XenStore::Directory),
                                          InstanceMethod("setPermissions", &XenStore::SetPermissions),
                                          InstanceMethod("introduceDomain", &XenStore::IntroduceDomain),
                                          InstanceMethod("releaseDomain", &XenStore::ReleaseDomain),
                                          InstanceMethod("resumeDomain", &XenStore::ResumeDomain),
                                      }));
}

XenStore::XenStore(const Napi::CallbackInfo& info) : Napi::ObjectWrap<XenStore>(info) {
  try {
    xsh_ = Xen().xs_open(0);
  } catch (const XenError& e) {
    throw e.ToJs(info.Env());
  }
  if (!xsh_) Fail(info.Env(), "xs_open", "xenstored");
}

XenStore::~XenStore() {
  if (xsh_) Xen().xs_close(xsh_);
}

struct xs_handle* XenStore::Handle(Napi::Env env) {
  if (!xsh_) throw Napi::Error::New(env, "XenStore is closed");
  return xsh_;
}

Napi::Value XenStore::Close(const Napi::CallbackInfo& info) {
  if (xsh_) Xen().xs_close(xsh_);
  xsh_ = nullptr;
  return info.Env().Undefined();
}

// Resolves to null for a missing node (ENOENT), the way callers want to test existence.
Napi::Value XenStore::Read(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info);
  unsigned int len = 0;
  void* value = Xen().xs_read(Handle(info.Env()), XBT_NULL, path.c_str(), &len);
  if (!value) {
    if (errno == ENOENT) return info.Env().Null();
    Fail(info.Env(), "xs_read", path);
  }
  std::string s(static_cast<char*>(value), len);
  free(value);
  return Napi::String::New(info.Env(), s);
}

Napi::Value XenStore::Write(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info);
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(info.Env(), "xenstore value must be a string");
  std::string value = info[1].As<Napi::String>();
  if (!Xen().xs_write(Handle(info.Env()), XBT_NULL, path.c_str(), value.data(), unsigned(value.size())))
    Fail(info.Env(), "xs_write", path);
  return info.Env().Undefined();
}

Napi::Value XenStore::Mkdir(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info);
  if (!Xen().xs_mkdir(Handle(info.Env()), XBT_NULL, path.c_str())) Fail(info.Env(), "xs_mkdir", path);
  return info.Env().Undefined();
}

// Removing a node that is not there is not an error.
Napi::Value XenStore::Rm(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info);
  if (!Xen().xs_rm(Handle(info.Env()), XBT_NULL, path.c_str()) && errno != ENOENT) Fail(info.Env(), "xs_rm", path);
  return info.Env().Undefined();
}

Napi::Value XenStore::Directory(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info);
  unsigned int n = 0;
  char** entries = Xen().xs_directory(Handle(info.Env()), XBT_NULL, path.c_str(), &n);
  if (!entries) {
    if (errno == ENOENT) return info.Env().Null();
    Fail(info.Env(), "xs_directory", path);
  }
  Napi::Array out = Napi::Array::New(info.Env(), n);
  for (unsigned i = 0; i < n; i++) out[i] = Napi::String::New(info.Env(), entries[i]);
  free(entries);
  return out;
}

// setPermissions(path, [{ domid, read, write }]): the first entry is the owner, and its
// read/write flags are what every domain not listed gets.
Napi::Value XenStore::SetPermissions(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info);
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "permissions must be an array");
  Napi::Array list = info[1].As<Napi::Array>();
  std::vector<struct xs_permissions> perms;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Object p = list.Get(i).As<Napi::Object>();
    unsigned bits = XS_PERM_NONE;
    if (p.Get("read").ToBoolean()) bits |= XS_PERM_READ;
    if (p.Get("write").ToBoolean()) bits |= XS_PERM_WRITE;
    perms.push_back({p.Get("domid").As<Napi::Number>().Uint32Value(), bits});
  }
  if (perms.empty()) throw Napi::TypeError::New(info.Env(), "permissions need at least the owner");
  if (!Xen().xs_set_permissions(Handle(info.Env()), XBT_NULL, path.c_str(), perms.data(), unsigned(perms.size())))
    Fail(info.Env(), "xs_set_permissions", path);
  return info.Env().Undefined();
}

Napi::Value XenStore::IntroduceDomain(const Napi::CallbackInfo& info) {
  uint32_t domid = UintArg(info, 0, "domid");
  uint32_t gfn = UintArg(info, 1, "store gfn");
  uint32_t port = UintArg(info, 2, "store port");
  if (!Xen().xs_introduce_domain(Handle(info.Env()), domid, gfn, port))
    Fail(info.Env(), "xs_introduce_domain", "domain " + std::to_string(domid));
  return info.Env().Undefined();
}

Napi::Value XenStore::ReleaseDomain(const Napi::CallbackInfo& info) {
  uint32_t domid = UintArg(info, 0, "domid");
  if (!Xen().xs_release_domain(Handle(info.Env()), domid) && errno != ENOENT)
    Fail(info.Env(), "xs_release_domain", "domain " + std::to_string(domid));
  return info.Env().Undefined();
}

// xenstored marks a domain shut down once and fires @releaseDomain only on that change; after a
// suspend that the toolstack resumes, it must be told (as libxl does), or the domain's next
// suspend fires no @releaseDomain and `xl save` waits for it until it times out.
Napi::Value XenStore::ResumeDomain(const Napi::CallbackInfo& info) {
  uint32_t domid = UintArg(info, 0, "domid");
  if (!Xen().xs_resume_domain(Handle(info.Env()), domid))
    Fail(info.Env(), "xs_resume_domain", "domain " + std::to_string(domid));
  return info.Env().Undefined();
}

}  // namespace snowflock
