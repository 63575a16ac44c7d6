// Compression of stored values (zstd), private to the stores: a store that
// compresses marks the entry with kFlagZstd and strips the mark again on
// every read, so neither the Python module nor the app ever sees it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace regioncache {

// The entry's bytes are a zstd frame of the value (file and memcached stores).
inline constexpr uint32_t kFlagZstd = 1u << 8;

// The highest compression level OPTIONS may name (levels run from 1).
int MaxCompressLevel();

// Compresses data at level into *out. False, with *out cleared, when it
// fails or the frame would be longer than max_size (the caller's "worth it"
// bound): the caller then stores the plain value.
bool Compress(std::string_view data, int level, size_t max_size, std::string* out);

// The size a frame says it decompresses to. False if the frame does not say,
// or says more than limit.
bool FrameContentSize(std::string_view frame, uint64_t limit, uint64_t* size);

// Decompresses frame into exactly size bytes at out. False, with *why set,
// unless the frame yields exactly that many bytes.
bool Decompress(std::string_view frame, char* out, size_t size, std::string* why);

}  // namespace regioncache
