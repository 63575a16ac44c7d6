#include "core/compress.h"

#include <zstd.h>

namespace regioncache {

int MaxCompressLevel() { return ZSTD_maxCLevel(); }

bool Compress(std::string_view data, int level, size_t max_size, std::string* out) {
  out->resize(ZSTD_compressBound(data.size()));
  size_t n = ZSTD_compress(out->data(), out->size(), data.data(), data.size(), level);
  if (ZSTD_isError(n) || n > max_size) {
    out->clear();
    return false;
  }
  out->resize(n);
  return true;
}

bool FrameContentSize(std::string_view frame, uint64_t limit, uint64_t* size) {
  unsigned long long n = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > limit) return false;
  *size = n;
  return true;
}

bool Decompress(std::string_view frame, char* out, size_t size, std::string* why) {
  size_t got = ZSTD_decompress(out, size, frame.data(), frame.size());
  if (ZSTD_isError(got)) {
    *why = ZSTD_getErrorName(got);
    return false;
  }
  if (got != size) {
    *why = "decompresses to " + std::to_string(got) + " bytes, not " + std::to_string(size);
    return false;
  }
  return true;
}

}  // namespace regioncache
