// Value authentication for regions other users or hosts can write (OPTIONS
// SIGNING_KEY): HMAC-SHA256 from OpenSSL's libcrypto over the made key, the
// value's flags and its bytes. The 32-byte tag follows the value's bytes and
// the entry carries kFlagSigned (codec.h).
//
// Used only with the GIL held (from the Cache methods), so one context per
// region is enough.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace regioncache::py {

inline constexpr size_t kMacSize = 32;

class Signer {
 public:
  // keys[0] signs; every key verifies (rotation: SIGNING_KEY_FALLBACKS).
  // Returns nullptr with *error set if libcrypto refuses.
  static std::unique_ptr<Signer> Make(const std::vector<std::string>& keys, std::string* error);
  ~Signer();
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;

  // tag = HMAC(keys[0], "rcv1" | len(key) | key | flags | data). False if
  // libcrypto failed (then nothing may be stored).
  bool Sign(std::string_view key, uint32_t flags, std::string_view data, unsigned char* tag);
  // True if tag matches under any key (constant-time compare).
  bool Verify(std::string_view key, uint32_t flags, std::string_view data, const unsigned char* tag);

 private:
  Signer() = default;
  bool Mac(size_t i, std::string_view key, uint32_t flags, std::string_view data, unsigned char* out);
  std::vector<void*> ctx_;  // EVP_MAC_CTX*, keyed, one per key
};

}  // namespace regioncache::py
