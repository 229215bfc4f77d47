// listenTcp(host, port): a listening TCP socket with TCP_NODELAY set, for a child process to
// inherit (qemu-storage-daemon's `--nbd-server addr.type=fd`). Linux copies TCP_NODELAY from a
// listening socket to the sockets it accepts; QEMU before 8.0 never sets it on its NBD server's
// connections, and each TLS record of a reply then waits for the client's delayed ACK.
#pragma once

#include <napi.h>

namespace snowflock {

void RegisterTcpListener(Napi::Env env, Napi::Object exports);

}  // namespace snowflock
