// Value flags: how the bytes of a value were encoded, so that any reader
// (the Python module, the desktop app, another process) decodes them alike.
// The low byte is the encoding; higher bits are transforms applied on top.
#pragma once

#include <cstdint>
#include <string_view>

namespace regioncache {

enum : uint32_t {
  kEncBytes = 0,    // raw bytes (Python bytes)
  kEncStr = 1,      // UTF-8 text (Python str, exactly str)
  kEncInt = 2,      // decimal ASCII integer, optional '-' (Python int, exactly int)
  kEncPickle = 3,   // pickle, highest protocol (everything else)
  kEncodingMask = 0xff,

  // Bit 8 belongs to the stores (core/compress.h): set on the stored entry
  // only, stripped before a value leaves the store.
  // The value's bytes end with a 32-byte HMAC-SHA256 tag over the full key,
  // these flags and the bytes before it (OPTIONS SIGNING_KEY; the Python
  // module signs and checks, stores pass it through like any other bit).
  kFlagSigned = 1u << 9,
  // Every bit a value handed to or returned by a store may carry.
  kKnownFlags = kEncodingMask | kFlagSigned,
};

inline uint32_t Encoding(uint32_t flags) { return flags & kEncodingMask; }

// "bytes", "str", "int", "pickle", "unknown(7)"-style names for display.
const char* EncodingName(uint32_t flags);

// Parses a kEncInt payload. False if it is not a decimal integer in int64.
bool ParseInt64(std::string_view text, int64_t* out);

}  // namespace regioncache
