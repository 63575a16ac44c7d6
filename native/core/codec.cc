#include "regioncache/codec.h"

#include <charconv>

namespace regioncache {

const char* EncodingName(uint32_t flags) {
  switch (Encoding(flags)) {
    case kEncBytes: return "bytes";
    case kEncStr: return "str";
    case kEncInt: return "int";
    case kEncPickle: return "pickle";
    default: return "unknown";
  }
}

bool ParseInt64(std::string_view text, int64_t* out) {
  if (text.empty()) return false;
  const char* b = text.data();
  const char* e = b + text.size();
  auto [p, ec] = std::from_chars(b, e, *out);
  return ec == std::errc() && p == e;
}

}  // namespace regioncache
