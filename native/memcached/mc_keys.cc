// Memcached's view of keys and values: the mapping of made keys that are not
// memcached keys, the envelope that carries the made key, and expiry as
// memcached's exptime. The scheme is described in mc_keys.h.
#include "memcached/mc_keys.h"

#include <xxhash.h>

#include <climits>
#include <cstring>

namespace regioncache::mc {
namespace {

constexpr std::string_view kMarker = "~#";
constexpr size_t kHashHex = 32;
constexpr int64_t kThirtyDays = 30LL * 24 * 3600;

bool SafeByte(unsigned char c) { return c > 0x20 && c != 0x7f; }

bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool IsSafeKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  for (unsigned char c : key)
    if (!SafeByte(c)) return false;
  return true;
}

bool MakeWireKey(std::string_view made, std::string* wire) {
  if (IsSafeKey(made)) {
    wire->assign(made.data(), made.size());
    return false;
  }
  size_t head = made.size() < kHeadBytes ? made.size() : kHeadBytes;
  wire->clear();
  wire->reserve(head + kMarker.size() + kHashHex);
  for (size_t i = 0; i < head; ++i) {
    unsigned char c = static_cast<unsigned char>(made[i]);
    wire->push_back(SafeByte(c) ? static_cast<char>(c) : '_');
  }
  wire->append(kMarker);
  XXH128_hash_t h = XXH3_128bits(made.data(), made.size());
  static const char kDigits[] = "0123456789abcdef";
  for (uint64_t part : {h.high64, h.low64})
    for (int shift = 60; shift >= 0; shift -= 4) wire->push_back(kDigits[(part >> shift) & 0xf]);
  return true;
}

bool LooksMapped(std::string_view wire) {
  if (wire.size() < kMarker.size() + kHashHex) return false;
  std::string_view tail = wire.substr(wire.size() - kHashHex);
  for (char c : tail)
    if (!IsHex(c)) return false;
  return wire.substr(wire.size() - kHashHex - kMarker.size(), kMarker.size()) == kMarker;
}

void WrapEnvelope(std::string_view made, std::string_view payload, std::string* out) {
  uint32_t n = static_cast<uint32_t>(made.size());
  out->clear();
  out->reserve(4 + made.size() + payload.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out->append(made);
  out->append(payload);
}

bool UnwrapEnvelope(std::string_view stored, std::string_view* made, std::string_view* payload) {
  if (stored.size() < 4) return false;
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t(static_cast<unsigned char>(stored[i])) << (8 * i);
  if (n > stored.size() - 4) return false;
  *made = stored.substr(4, n);
  *payload = stored.substr(4 + n);
  return true;
}

time_t ToExptime(int64_t expires_ms, int64_t now_ms) {
  if (expires_ms == 0) return 0;
  int64_t left_ms = expires_ms - now_ms;
  if (left_ms <= 0) return -1;  // memcached: a negative exptime is already expired
  int64_t left_s = (left_ms + 999) / 1000;
  if (left_s <= kThirtyDays) return static_cast<time_t>(left_s);
  int64_t abs_s = (expires_ms + 999) / 1000;
  // memcached reads exptime as a 32-bit int.
  if (abs_s > INT32_MAX) abs_s = INT32_MAX;
  return static_cast<time_t>(abs_s);
}

std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexVal(s[i + 1]), lo = HexVal(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace regioncache::mc
