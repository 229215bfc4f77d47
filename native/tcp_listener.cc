#include "tcp_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace snowflock {

namespace {

[[noreturn]] void Fail(Napi::Env env, const std::string& what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  throw e;
}

// listenTcp(host: string, port: number, backlog: number) -> { fd, port }. The fd is close-on-exec:
// a child gets it only where the caller places it (spawn's stdio), and the caller closes it.
Napi::Value ListenTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "listenTcp(host: string, port: number, backlog: number)");
  }
  const std::string host = info[0].As<Napi::String>();
  const int port = info[1].As<Napi::Number>().Int32Value();
  const int backlog = info[2].As<Napi::Number>().Int32Value();
  if (port < 0 || port > 65535) throw Napi::RangeError::New(env, "port " + std::to_string(port) + " is outside 0..65535");

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int gai = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (gai != 0) throw Napi::Error::New(env, "cannot resolve " + host + ": " + gai_strerror(gai));

  int err = 0;
  std::string step;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno, step = "socket";
      continue;
    }
    const int one = 1;
    // SO_REUSEADDR: a restarted front takes its old port while connections to it linger.
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
      err = errno, step = "SO_REUSEADDR";
    } else if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
      err = errno, step = "TCP_NODELAY";
    } else if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno, step = "bind " + host + ":" + service;
    } else if (listen(fd, backlog) != 0) {
      err = errno, step = "listen";
    } else {
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
        err = errno, step = "getsockname";
      } else {
        freeaddrinfo(found);
        const int boundPort = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                                           : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
        Napi::Object out = Napi::Object::New(env);
        out.Set("fd", Napi::Number::New(env, fd));
        out.Set("port", Napi::Number::New(env, boundPort));
        return out;
      }
    }
    close(fd);
  }
  freeaddrinfo(found);
  Fail(env, step.empty() ? "no address for " + host : step, err);
}

}  // namespace

void RegisterTcpListener(Napi::Env env, Napi::Object exports) {
  exports.Set("listenTcp", Napi::Function::New(env, ListenTcp, "listenTcp"));
}

}  // namespace snowflock
