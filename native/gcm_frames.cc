#include "gcm_frames.h"

#include <openssl/evp.h>

#include <climits>
#include <cstring>
#include <stdexcept>

namespace snowflock {

GcmFrames::GcmFrames(const uint8_t* key, Direction direction) : ctx_(EVP_CIPHER_CTX_new()), direction_(direction) {
  bool seal = direction == Direction::kSeal;
  if (!ctx_ || EVP_CipherInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key, nullptr, seal ? 1 : 0) != 1) {
    EVP_CIPHER_CTX_free(ctx_);
    throw std::runtime_error("AES-256-GCM is not available in OpenSSL");
  }
}

GcmFrames::~GcmFrames() { EVP_CIPHER_CTX_free(ctx_); }

bool GcmFrames::NextIv(uint8_t iv[12]) {
  if (spent_) return false;
  uint64_t c = counter_;
  if (counter_ == UINT64_MAX) spent_ = true;
  else counter_++;
  for (int i = 0; i < 8; i++) iv[i] = uint8_t(c >> (8 * i));
  std::memset(iv + 8, 0, 4);
  return true;
}

bool GcmFrames::Seal(const uint8_t* head, const uint8_t* in, size_t len, uint8_t* out, uint8_t* tag) {
  uint8_t iv[12];
  int outl = 0;
  return direction_ == Direction::kSeal && len <= INT_MAX && NextIv(iv) && EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) == 1 &&
         EVP_EncryptUpdate(ctx_, nullptr, &outl, head, 4) == 1 && EVP_EncryptUpdate(ctx_, out, &outl, in, int(len)) == 1 &&
         EVP_EncryptFinal_ex(ctx_, out + len, &outl) == 1 && EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG, int(kTagBytes), tag) == 1;
}

bool GcmFrames::Open(const uint8_t* head, const uint8_t* in, size_t len, uint8_t* out, const uint8_t* tag) {
  uint8_t iv[12];
  int outl = 0;
  return direction_ == Direction::kOpen && len <= INT_MAX && NextIv(iv) && EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) == 1 &&
         EVP_DecryptUpdate(ctx_, nullptr, &outl, head, 4) == 1 && EVP_DecryptUpdate(ctx_, out, &outl, in, int(len)) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_TAG, int(kTagBytes), const_cast<uint8_t*>(tag)) == 1 &&
         EVP_DecryptFinal_ex(ctx_, out + len, &outl) == 1;
}

}  // namespace snowflock
