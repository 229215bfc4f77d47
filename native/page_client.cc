#include "page_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "xen_error.h"
#include "xen_headers.h"

namespace snowflock {

namespace {

enum : uint8_t { kHello = 1, kWelcome = 2, kGet = 3, kPages = 4, kError = 5, kBye = 6 };
constexpr char kMagic[8] = {'S', 'F', 'M', 'T', 'A', 'P', '0', '1'};
constexpr uint32_t kVersion = 1;
// A full PAGES reply: type, count, 256 x (gfn + page).
constexpr uint32_t kMaxFrame = 1 + 4 + 256 * (8 + 4096) + 64;

void Put32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; i++) b.push_back(uint8_t(v >> (8 * i)));
}
void Put64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; i++) b.push_back(uint8_t(v >> (8 * i)));
}

// Reads little-endian fields from a received payload, failing on a short one.
class Reader {
 public:
  explicit Reader(const std::vector<uint8_t>& b) : b_(b) {}
  bool Has(size_t n) const { return pos_ + n <= b_.size(); }
  uint32_t U32() { return uint32_t(Take(4)); }
  uint64_t U64() { return Take(8); }
  const uint8_t* Bytes(size_t n) {
    if (!Has(n)) throw std::length_error("short frame");
    const uint8_t* p = b_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::string Rest() { return std::string(b_.begin() + long(pos_), b_.end()); }

 private:
  uint64_t Take(int n) {
    const uint8_t* p = Bytes(size_t(n));
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= uint64_t(p[i]) << (8 * i);
    return v;
  }
  const std::vector<uint8_t>& b_;
  size_t pos_ = 0;
};

}  // namespace

PageClient::PageClient(std::string host, uint16_t port, std::array<uint8_t, 32> token, uint32_t vmid, int timeout_ms)
    : host_(std::move(host)), port_(port), token_(token), vmid_(vmid), timeout_ms_(timeout_ms) {}

PageClient::~PageClient() { Close(); }

void PageClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void PageClient::Fail(const std::string& what, int err) {
  Close();
  throw XenError("memserver", address() + ": " + what, err, "");
}

Welcome PageClient::Connect() {
  Close();
  struct addrinfo hints = {}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &res);
  if (rc) Fail(std::string("cannot resolve: ") + gai_strerror(rc), EHOSTUNREACH);
  int err = ECONNREFUSED;
  for (auto* ai = res; ai && fd_ < 0; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
      struct pollfd p = {fd, POLLOUT, 0};
      socklen_t len = sizeof err;
      if (poll(&p, 1, timeout_ms_) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        fd_ = fd;
        break;
      }
      if (err == 0) err = ETIMEDOUT;
    } else {
      err = errno;
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (fd_ < 0) Fail(std::string("cannot connect: ") + strerror(err), err);
  fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval tv = {timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

  std::vector<uint8_t> hello(kMagic, kMagic + 8);
  Put32(hello, kVersion);
  hello.insert(hello.end(), token_.begin(), token_.end());
  Put32(hello, vmid_);
  SendFrame(kHello, hello);
  std::vector<uint8_t> payload;
  if (ReadFrame(&payload) != kWelcome) Fail("expected WELCOME", EPROTO);
  Welcome w;
  try {
    Reader r(payload);
    w.pages = r.U64();
    std::memcpy(w.image_id.data(), r.Bytes(16), 16);
    uint32_t ranges = r.U32();
    if (!r.Has(size_t(ranges) * 16)) Fail("WELCOME: short evict list", EPROTO);
    for (uint32_t i = 0; i < ranges; i++) {
      uint64_t start = r.U64(), count = r.U64();
      w.evict.push_back({start, count});
    }
    uint32_t eager = r.U32();
    if (!r.Has(size_t(eager) * 8)) Fail("WELCOME: short eager list", EPROTO);
    for (uint32_t i = 0; i < eager; i++) w.eager.push_back(r.U64());
  } catch (const std::length_error&) {
    Fail("WELCOME is truncated", EPROTO);
  }
  return w;
}

void PageClient::Get(const uint64_t* gfns, size_t n, uint8_t* out) {
  if (fd_ < 0) Fail("not connected", ENOTCONN);
  std::vector<uint8_t> req;
  Put32(req, uint32_t(n));
  for (size_t i = 0; i < n; i++) Put64(req, gfns[i]);
  SendFrame(kGet, req);
  std::vector<uint8_t> payload;
  if (ReadFrame(&payload) != kPages) Fail("expected PAGES", EPROTO);
  try {
    Reader r(payload);
    if (r.U32() != n) Fail("PAGES: wrong page count", EPROTO);
    for (size_t i = 0; i < n; i++)
      if (r.U64() != gfns[i]) Fail("PAGES: gfns out of order", EPROTO);
    std::memcpy(out, r.Bytes(n * XC_PAGE_SIZE), n * XC_PAGE_SIZE);
  } catch (const std::length_error&) {
    Fail("PAGES is truncated", EPROTO);
  }
}

void PageClient::Bye() {
  if (fd_ < 0) return;
  try {
    std::vector<uint8_t> b;
    Put32(b, vmid_);
    SendFrame(kBye, b);
  } catch (const XenError&) {
  }
  Close();
}

void PageClient::SendFrame(uint8_t type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> frame;
  Put32(frame, uint32_t(payload.size() + 1));
  frame.push_back(type);
  frame.insert(frame.end(), payload.begin(), payload.end());
  WriteExact(frame.data(), frame.size());
}

uint8_t PageClient::ReadFrame(std::vector<uint8_t>* payload) {
  uint8_t head[5];
  ReadExact(head, 5);
  uint32_t length = uint32_t(head[0]) | uint32_t(head[1]) << 8 | uint32_t(head[2]) << 16 | uint32_t(head[3]) << 24;
  if (length == 0 || length > kMaxFrame) Fail("bad frame length " + std::to_string(length), EPROTO);
  payload->resize(length - 1);
  if (length > 1) ReadExact(payload->data(), length - 1);
  if (head[4] == kError) {
    Reader r(*payload);
    uint32_t code = r.Has(4) ? r.U32() : 0;
    Fail("refused (code " + std::to_string(code) + "): " + r.Rest(), code == 2 ? EACCES : EPROTO);
  }
  return head[4];
}

void PageClient::ReadExact(uint8_t* buf, size_t n) {
  while (n) {
    ssize_t got = recv(fd_, buf, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) Fail(errno == EAGAIN ? "timed out waiting for the server" : std::string("receive: ") + strerror(errno), errno == EAGAIN ? ETIMEDOUT : errno);
    if (got == 0) Fail("connection closed by the server", ECONNRESET);
    buf += got;
    n -= size_t(got);
  }
}

void PageClient::WriteExact(const uint8_t* buf, size_t n) {
  while (n) {
    ssize_t put = send(fd_, buf, n, MSG_NOSIGNAL);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) Fail(std::string("send: ") + strerror(errno), errno);
    buf += put;
    n -= size_t(put);
  }
}

}  // namespace snowflock
