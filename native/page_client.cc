#include "page_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "gcm_frames.h"
#include "xen_error.h"
#include "xen_headers.h"

namespace snowflock {

namespace {

enum : uint8_t { kHello = 1, kWelcome = 2, kGet = 3, kPages = 4, kError = 5, kBye = 6, kChallenge = 9, kProof = 10 };
constexpr char kMagic[8] = {'S', 'F', 'M', 'T', 'A', 'P', '0', '1'};
constexpr uint32_t kVersion = 2;
constexpr uint32_t kFlagPlaintext = 1;
constexpr size_t kNonce = 32, kProofBytes = 32, kTag = 16;
constexpr size_t kChallengeBytes = 4 + 4 + kNonce + kProofBytes, kChallengeHead = 4 + 4 + kNonce;
constexpr char kInfo[] = "snowflock memserver v2";
// A full PAGES reply: type, count, 256 x (gfn + page), and a seal's tag.
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
  Reader(const uint8_t* b, size_t n) : b_(b), n_(n) {}
  bool Has(size_t n) const { return pos_ + n <= n_; }
  uint32_t U32() { return uint32_t(Take(4)); }
  uint64_t U64() { return Take(8); }
  const uint8_t* Bytes(size_t n) {
    if (!Has(n)) throw std::length_error("short frame");
    const uint8_t* p = b_ + pos_;
    pos_ += n;
    return p;
  }
  std::string Rest() { return std::string(reinterpret_cast<const char*>(b_ + pos_), n_ - pos_); }

 private:
  uint64_t Take(int n) {
    const uint8_t* p = Bytes(size_t(n));
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= uint64_t(p[i]) << (8 * i);
    return v;
  }
  const uint8_t* b_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace

struct PageClient::Sealing {
  Sealing(const uint8_t* tx_key, const uint8_t* rx_key) : tx(tx_key, GcmFrames::Direction::kSeal), rx(rx_key, GcmFrames::Direction::kOpen) {}
  GcmFrames tx, rx;
};

PageClient::PageClient(std::string host, uint16_t port, std::array<uint8_t, 32> token, uint32_t vmid, int timeout_ms)
    : host_(std::move(host)), port_(port), token_(token), vmid_(vmid), timeout_ms_(timeout_ms) {}

PageClient::~PageClient() { Close(); }

void PageClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  sealing_.reset();
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

  Handshake();
  if (ReadFrame() != kWelcome) Fail("expected WELCOME", EPROTO);
  Welcome w;
  try {
    Reader r(rx_.data() + rx_at_, rx_len_);
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

// HELLO with a fresh nonce; the CHALLENGE must carry the server's proof of the key; PROOF back.
// Keys and proofs as lib/memtap/secure.ts derives them.
void PageClient::Handshake() {
  uint8_t nonce_c[kNonce];
  if (RAND_bytes(nonce_c, kNonce) != 1) Fail("no random bytes for the handshake", EIO);
  std::vector<uint8_t> hello(kMagic, kMagic + 8);
  Put32(hello, kVersion);
  Put32(hello, vmid_);
  hello.insert(hello.end(), nonce_c, nonce_c + kNonce);
  SendFrame(kHello, hello);
  uint8_t type = ReadFrame();
  if (type != kChallenge) Fail("expected CHALLENGE (type " + std::to_string(type) + ")", EPROTO);
  const uint8_t* c = rx_.data() + rx_at_;
  if (rx_len_ >= 4) {
    uint32_t version = uint32_t(c[0]) | uint32_t(c[1]) << 8 | uint32_t(c[2]) << 16 | uint32_t(c[3]) << 24;
    if (version != kVersion) Fail("memserver speaks protocol version " + std::to_string(version) + ", this memtap " + std::to_string(kVersion), EPROTO);
  }
  if (rx_len_ != kChallengeBytes) Fail("CHALLENGE is " + std::to_string(rx_len_) + " bytes", EPROTO);
  uint32_t flags = uint32_t(c[4]) | uint32_t(c[5]) << 8 | uint32_t(c[6]) << 16 | uint32_t(c[7]) << 24;
  const uint8_t* nonce_s = c + 8;
  const uint8_t* server_proof = c + kChallengeHead;

  uint8_t salt[2 * kNonce];
  std::memcpy(salt, nonce_c, kNonce);
  std::memcpy(salt + kNonce, nonce_s, kNonce);
  std::vector<uint8_t> info(kInfo, kInfo + sizeof kInfo - 1);
  Put32(info, vmid_);
  Put32(info, flags);
  uint8_t okm[128];
  size_t okm_len = sizeof okm;
  EVP_PKEY_CTX* kdf = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  bool ok = kdf && EVP_PKEY_derive_init(kdf) > 0 && EVP_PKEY_CTX_set_hkdf_md(kdf, EVP_sha256()) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_salt(kdf, salt, int(sizeof salt)) > 0 && EVP_PKEY_CTX_set1_hkdf_key(kdf, token_.data(), int(token_.size())) > 0 &&
            EVP_PKEY_CTX_add1_hkdf_info(kdf, info.data(), int(info.size())) > 0 && EVP_PKEY_derive(kdf, okm, &okm_len) > 0 && okm_len == sizeof okm;
  EVP_PKEY_CTX_free(kdf);
  if (!ok) Fail("HKDF failed in OpenSSL", EIO);
  std::vector<uint8_t> transcript(hello);
  transcript.insert(transcript.end(), c, c + kChallengeHead);
  uint8_t expect_s[kProofBytes], proof_c[kProofBytes];
  unsigned len_s = 0, len_c = 0;
  if (!HMAC(EVP_sha256(), okm + 64, 32, transcript.data(), transcript.size(), expect_s, &len_s) ||
      !HMAC(EVP_sha256(), okm + 96, 32, transcript.data(), transcript.size(), proof_c, &len_c))
    Fail("HMAC failed in OpenSSL", EIO);
  if (CRYPTO_memcmp(expect_s, server_proof, kProofBytes) != 0)
    Fail("the server did not prove this fork's key (not the fork's memserver, or a wrong key)", EACCES);
  SendFrame(kProof, std::vector<uint8_t>(proof_c, proof_c + kProofBytes));
  plaintext_ = (flags & kFlagPlaintext) != 0;
  if (!plaintext_) {
    try {
      sealing_ = std::make_unique<Sealing>(okm, okm + 32);
    } catch (const std::runtime_error& e) {
      OPENSSL_cleanse(okm, sizeof okm);
      Fail(e.what(), EIO);
    }
  }
  OPENSSL_cleanse(okm, sizeof okm);
}

void PageClient::Get(const uint64_t* gfns, size_t n, uint8_t* out) {
  if (fd_ < 0) Fail("not connected", ENOTCONN);
  std::vector<uint8_t> req;
  Put32(req, uint32_t(n));
  for (size_t i = 0; i < n; i++) Put64(req, gfns[i]);
  SendFrame(kGet, req);
  if (ReadFrame() != kPages) Fail("expected PAGES", EPROTO);
  try {
    Reader r(rx_.data() + rx_at_, rx_len_);
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
  size_t body = 1 + payload.size();
  tx_.resize(4 + body + kTag);
  uint32_t length = uint32_t(body + (sealing_ ? kTag : 0));
  for (int i = 0; i < 4; i++) tx_[size_t(i)] = uint8_t(length >> (8 * i));
  tx_[4] = type;
  if (!payload.empty()) std::memcpy(&tx_[5], payload.data(), payload.size());
  if (sealing_ && !sealing_->tx.Seal(tx_.data(), &tx_[4], body, &tx_[4], &tx_[4 + body])) Fail("sealing a frame failed in OpenSSL", EIO);
  WriteExact(tx_.data(), 4 + length);
}

uint8_t PageClient::ReadFrame() {
  uint8_t head[4];
  ReadExact(head, 4);
  uint32_t length = uint32_t(head[0]) | uint32_t(head[1]) << 8 | uint32_t(head[2]) << 16 | uint32_t(head[3]) << 24;
  size_t overhead = sealing_ ? kTag : 0;
  if (length < 1 + overhead || length > kMaxFrame + overhead) Fail("bad frame length " + std::to_string(length), EPROTO);
  if (rx_.size() < length) rx_.resize(length);
  ReadExact(rx_.data(), length);
  size_t body = length - overhead;
  if (sealing_ && !sealing_->rx.Open(head, rx_.data(), body, rx_.data(), rx_.data() + body))
    Fail("a sealed frame failed authentication (altered on the way, or not from the fork's memserver)", EPROTO);
  rx_at_ = 1;
  rx_len_ = body - 1;
  if (rx_[0] == kError) {
    Reader r(rx_.data() + 1, rx_len_);
    uint32_t code = r.Has(4) ? r.U32() : 0;
    Fail("refused (code " + std::to_string(code) + "): " + r.Rest(), code == 2 ? EACCES : EPROTO);
  }
  return rx_[0];
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
