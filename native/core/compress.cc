#include "core/compress.h"

#include <zstd.h>

#include <algorithm>

namespace regioncache {
namespace {

// One compression and one decompression context per thread, made on first
// use and kept: ZSTD_compress and ZSTD_decompress make (and free) a context
// of some hundred KB on every call, which for a 17 KB page cost more than
// the work itself (a get of one took 50 us instead of 15).
struct Contexts {
  ZSTD_CCtx* c = nullptr;
  ZSTD_DCtx* d = nullptr;
  ~Contexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};
thread_local Contexts tls_contexts;

}  // namespace

int MaxCompressLevel() { return ZSTD_maxCLevel(); }

bool Compress(std::string_view data, int level, size_t max_size, std::string* out) {
  Contexts& ctx = tls_contexts;
  if (!ctx.c) ctx.c = ZSTD_createCCtx();
  // A frame longer than max_size is not wanted: zstd stops with an error as
  // soon as it would not fit, instead of finishing a frame to throw away.
  out->resize(std::min(max_size, ZSTD_compressBound(data.size())));
  size_t n = ctx.c ? ZSTD_compressCCtx(ctx.c, out->data(), out->size(), data.data(), data.size(),
                                       level)
                   : ZSTD_compress(out->data(), out->size(), data.data(), data.size(), level);
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
  Contexts& ctx = tls_contexts;
  if (!ctx.d) ctx.d = ZSTD_createDCtx();
  size_t got = ctx.d ? ZSTD_decompressDCtx(ctx.d, out, size, frame.data(), frame.size())
                     : ZSTD_decompress(out, size, frame.data(), frame.size());
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
