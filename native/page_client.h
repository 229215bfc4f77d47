// The clone side of the memserver protocol (lib/memtap/protocol.ts has the wire format, and
// lib/memtap/secure.ts the handshake and sealed frames of version 2): a blocking TCP client used
// only from memtap's own thread. It proves the fork's key without sending it, believes the server
// only once it proved the key too, and seals every frame after that with AES-256-GCM (OpenSSL's
// EVP API, from the Node binary the addon is loaded into). Every error is a XenError with call
// "memserver" naming the server, so the fault loop can pause the clone and report it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gfn_ranges.h"

namespace snowflock {

struct Welcome {
  uint64_t pages = 0;
  std::array<uint8_t, 16> image_id{};
  std::vector<GfnRange> evict;  // pages to page out before the clone first runs
  std::vector<uint64_t> eager;  // pages to load before the clone first runs
};

class PageClient {
 public:
  static constexpr size_t kMaxGet = 256;

  PageClient(std::string host, uint16_t port, std::array<uint8_t, 32> token, uint32_t vmid, int timeout_ms);
  ~PageClient();
  PageClient(const PageClient&) = delete;
  PageClient& operator=(const PageClient&) = delete;

  Welcome Connect();  // (re)connects and says hello
  // Fetches n ≤ kMaxGet pages into out (n * 4096 bytes), in the order asked.
  void Get(const uint64_t* gfns, size_t n, uint8_t* out);
  // Tells the server this clone is finished; never throws.
  void Bye();
  void Close();
  bool connected() const { return fd_ >= 0; }
  // The server chose unsealed frames (memserver --insecure-plaintext); valid after Connect().
  bool plaintext() const { return plaintext_; }
  std::string address() const { return host_ + ":" + std::to_string(port_); }

 private:
  [[noreturn]] void Fail(const std::string& what, int err);
  void Handshake();
  void SendFrame(uint8_t type, const std::vector<uint8_t>& payload);
  // The next frame's type; its payload is in rx_[rx_at_, rx_at_ + rx_len_), opened if sealed.
  uint8_t ReadFrame();
  void ReadExact(uint8_t* buf, size_t n);
  void WriteExact(const uint8_t* buf, size_t n);

  std::string host_;
  uint16_t port_;
  std::array<uint8_t, 32> token_;
  uint32_t vmid_;
  int timeout_ms_;
  int fd_ = -1;
  bool plaintext_ = false;
  struct Sealing;  // keys, counters and cipher contexts of one connection
  std::unique_ptr<Sealing> sealing_;
  std::vector<uint8_t> rx_, tx_;
  size_t rx_at_ = 0, rx_len_ = 0;
};

}  // namespace snowflock
