// Keys and values as memcached sees them.
//
// memcached keys are at most 250 bytes with no space or control byte. A made
// key that is not such a key is mapped to one deterministically: its bytes
// with the unsafe ones replaced by '_', cut at kHeadBytes, then the marker
// "~#" and the 128-bit xxh3 of the whole made key in hex. The readable head
// keeps the region prefix, so listing and purge still see the key as the
// region's. The made key itself travels in a small envelope in front of the
// value (flag kFlagKeyEnvelope), so a read checks it (a hash collision or a
// safe key that happens to look mapped reads as a miss) and listing can show
// it. Integers under mapped keys carry no envelope: they must stay plain
// decimal text for the server's atomic incr/decr.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace regioncache::mc {

inline constexpr size_t kMaxKeyBytes = 250;
inline constexpr size_t kHeadBytes = 200;
inline constexpr uint32_t kFlagKeyEnvelope = 1u << 16;  // store-private; never returned

// True if memcached takes these bytes as a key as they are.
bool IsSafeKey(std::string_view key);

// The memcached key for a made key; returns true if it had to be mapped.
bool MakeWireKey(std::string_view made, std::string* wire);

// The same as a view without a copy for a safe key (the common case): *wire
// is made itself, or the mapping kept in *storage.
inline bool WireKey(std::string_view made, std::string* storage, std::string_view* wire) {
  if (IsSafeKey(made)) {
    *wire = made;
    return false;
  }
  MakeWireKey(made, storage);
  *wire = *storage;
  return true;
}

// True if a key found on a server has the mapped form.
bool LooksMapped(std::string_view wire);

// envelope = u32 little-endian length of the made key, the made key, payload.
void WrapEnvelope(std::string_view made, std::string_view payload, std::string* out);
bool UnwrapEnvelope(std::string_view stored, std::string_view* made, std::string_view* payload);

// memcached's exptime for an absolute expiry in epoch ms (0 = never): seconds
// from now up to 30 days, an absolute unix time beyond (memcached's rule).
// Sub-second remainders round up, so an entry never expires early.
time_t ToExptime(int64_t expires_ms, int64_t now_ms);

// Decodes metadump's %XX escapes.
std::string UrlDecode(std::string_view s);

}  // namespace regioncache::mc
