// One direction of the memserver's sealed frames (lib/memtap/secure.ts has the layout):
// AES-256-GCM under one key, nonce = u64 LE frame counter ‖ 4 zero bytes, the frame's u32
// length field as associated data. The key schedule runs once, when the object is made; a frame
// changes only the IV. The counter lives here and moves on every call, whatever its outcome, so
// no nonce is ever used twice with the key; past 2^64 - 1 frames every call fails.
// OpenSSL's EVP API only: the addon uses the OpenSSL inside Node, page_client_test the system's.
#pragma once

#include <cstddef>
#include <cstdint>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace snowflock {

class GcmFrames {
 public:
  static constexpr size_t kKeyBytes = 32, kTagBytes = 16;
  enum class Direction { kSeal, kOpen };

  // Throws std::runtime_error when OpenSSL cannot set up AES-256-GCM.
  GcmFrames(const uint8_t* key, Direction direction);
  ~GcmFrames();
  GcmFrames(const GcmFrames&) = delete;
  GcmFrames& operator=(const GcmFrames&) = delete;

  // Encrypts len bytes of in into out (the same pointer is allowed), writes the tag; head is the
  // frame's 4-byte length field. False when OpenSSL fails (the frame must not be sent).
  bool Seal(const uint8_t* head, const uint8_t* in, size_t len, uint8_t* out, uint8_t* tag);
  // Decrypts and checks; false when the frame does not authenticate (out then holds nothing usable).
  bool Open(const uint8_t* head, const uint8_t* in, size_t len, uint8_t* out, const uint8_t* tag);

 private:
  // The next frame's IV; false once the counter is spent.
  bool NextIv(uint8_t iv[12]);

  EVP_CIPHER_CTX* ctx_;
  Direction direction_;
  uint64_t counter_ = 0;
  bool spent_ = false;
};

}  // namespace snowflock
