#include "python/signing.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

namespace regioncache::py {

std::unique_ptr<Signer> Signer::Make(const std::vector<std::string>& keys, std::string* error) {
  std::unique_ptr<Signer> s(new Signer());
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (!mac) {
    *error = "libcrypto has no HMAC";
    return nullptr;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  for (const std::string& k : keys) {
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
    if (!ctx) break;
    s->ctx_.push_back(ctx);
    // Keyed once here; each Mac() re-initialises with the same key.
    if (!EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(k.data()), k.size(), params)) {
      *error = "libcrypto refused the HMAC-SHA256 key";
      EVP_MAC_free(mac);
      return nullptr;
    }
  }
  EVP_MAC_free(mac);
  if (s->ctx_.size() != keys.size() || keys.empty()) {
    *error = "libcrypto could not make an HMAC context";
    return nullptr;
  }
  return s;
}

Signer::~Signer() {
  for (void* c : ctx_) EVP_MAC_CTX_free(static_cast<EVP_MAC_CTX*>(c));
}

bool Signer::Mac(size_t i, std::string_view key, uint32_t flags, std::string_view data,
                 unsigned char* out) {
  EVP_MAC_CTX* ctx = static_cast<EVP_MAC_CTX*>(ctx_[i]);
  // A domain tag, then the key's length so that key and value cannot trade
  // bytes, then the flags (the encoding is covered: bytes cannot be replayed
  // as a pickle).
  unsigned char head[12] = {'r', 'c', 'v', '1'};
  uint32_t klen = static_cast<uint32_t>(key.size());
  for (int b = 0; b < 4; ++b) {
    head[4 + b] = static_cast<unsigned char>(klen >> (8 * b));
    head[8 + b] = static_cast<unsigned char>(flags >> (8 * b));
  }
  size_t n = 0;
  return EVP_MAC_init(ctx, nullptr, 0, nullptr) &&
         EVP_MAC_update(ctx, head, 8) &&
         EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size()) &&
         EVP_MAC_update(ctx, head + 8, 4) &&
         EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) &&
         EVP_MAC_final(ctx, out, &n, kMacSize) && n == kMacSize;
}

bool Signer::Sign(std::string_view key, uint32_t flags, std::string_view data, unsigned char* tag) {
  return Mac(0, key, flags, data, tag);
}

bool Signer::Verify(std::string_view key, uint32_t flags, std::string_view data,
                    const unsigned char* tag) {
  unsigned char want[kMacSize];
  for (size_t i = 0; i < ctx_.size(); ++i) {
    if (Mac(i, key, flags, data, want) && CRYPTO_memcmp(want, tag, kMacSize) == 0) return true;
  }
  return false;
}

}  // namespace regioncache::py
