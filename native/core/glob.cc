#include "regioncache/glob.h"

#include <cstddef>

namespace regioncache {
namespace {

// Matches one class "[...]" at p against c. Sets *len to the class's length
// in the pattern, or 0 if the class is unterminated (then '[' is literal).
bool MatchClass(std::string_view p, unsigned char c, size_t* len) {
  size_t i = 1;
  bool negate = false;
  if (i < p.size() && (p[i] == '!' || p[i] == '^')) {
    negate = true;
    ++i;
  }
  bool matched = false;
  bool first = true;
  while (i < p.size() && (p[i] != ']' || first)) {
    first = false;
    unsigned char lo = static_cast<unsigned char>(p[i]);
    if (lo == '\\' && i + 1 < p.size()) lo = static_cast<unsigned char>(p[++i]);
    unsigned char hi = lo;
    if (i + 2 < p.size() && p[i + 1] == '-' && p[i + 2] != ']') {
      hi = static_cast<unsigned char>(p[i + 2]);
      i += 2;
    }
    if (c >= lo && c <= hi) matched = true;
    ++i;
  }
  if (i >= p.size()) {
    *len = 0;
    return false;
  }
  *len = i + 1;
  return matched != negate;
}

}  // namespace

// Iterative matcher with one backtrack point for the last '*': linear in
// practice, never exponential.
bool GlobMatch(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0;
  size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      char pc = pattern[p];
      if (pc == '*') {
        star_p = ++p;
        star_t = t;
        continue;
      }
      if (pc == '?') {
        ++p;
        ++t;
        continue;
      }
      if (pc == '[') {
        size_t len = 0;
        bool m = MatchClass(pattern.substr(p), static_cast<unsigned char>(text[t]), &len);
        if (len != 0) {
          if (m) {
            p += len;
            ++t;
            continue;
          }
        } else if (text[t] == '[') {  // unterminated: literal '['
          ++p;
          ++t;
          continue;
        }
      } else {
        if (pc == '\\' && p + 1 < pattern.size()) pc = pattern[p + 1];
        if (pc == text[t]) {
          p += (pattern[p] == '\\' && p + 1 < pattern.size()) ? 2 : 1;
          ++t;
          continue;
        }
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace regioncache
