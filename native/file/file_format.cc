// The entry header's checksums and the names in a store directory (file_format.h).
#include "file/file_format.h"

#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <random>

#include "file/file_io.h"
#include "regioncache/codec.h"
#include "core/compress.h"

namespace regioncache::file {
namespace {

const char kHex[] = "0123456789abcdef";

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

void AppendHex64(uint64_t v, std::string* out) {
  for (int i = 60; i >= 0; i -= 4) out->push_back(kHex[(v >> i) & 0xf]);
}

}  // namespace

void SealExpiry(EntryHeader* h) {
  const char* p = reinterpret_cast<const char*>(h);
  h->expiry_sum = XXH3_64bits_withSeed(p + 40, 16, kExpirySeed);
}

bool ExpiryIntact(const EntryHeader& h) {
  const char* p = reinterpret_cast<const char*>(&h);
  return h.expiry_sum == XXH3_64bits_withSeed(p + 40, 16, kExpirySeed);
}

bool HeaderPlausible(const EntryHeader& h, uint64_t file_size, std::string* why) {
  if (h.magic != kMagic) {
    *why = "not a regioncache entry file (bad magic)";
    return false;
  }
  if (h.version != kVersion || h.header_size != kHeaderSize) {
    *why = "entry format version " + std::to_string(h.version) + " (this build reads " +
           std::to_string(kVersion) + ")";
    return false;
  }
  // Each term is checked on its own first, so the sum cannot wrap.
  if (h.value_len > file_size || h.key_len > file_size ||
      uint64_t(kHeaderSize) + h.key_len + h.value_len != file_size) {
    *why = "truncated or overlong: header says " + std::to_string(kHeaderSize) + "+" +
           std::to_string(h.key_len) + "+" + std::to_string(h.value_len) + " bytes, file has " +
           std::to_string(file_size);
    return false;
  }
  bool zstd = (h.flags & kFlagZstd) != 0;
  if ((!zstd && h.raw_len != h.value_len) || h.raw_len > kMaxRawLen) {
    *why = "inconsistent value lengths";
    return false;
  }
  return true;
}

BodySum::BodySum() : state_(XXH3_createState()) {}
BodySum::~BodySum() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void BodySum::Begin(const EntryHeader& h) {
  auto* st = static_cast<XXH3_state_t*>(state_);
  XXH3_64bits_reset_withSeed(st, kBodySeed);
  XXH3_64bits_update(st, &h, kBodySumCovers);
}

void BodySum::Update(const void* p, size_t n) {
  if (n) XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), p, n);
}

uint64_t BodySum::Digest() const {
  return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_));
}

std::string EntryName(std::string_view key) {
  XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
  std::string s;
  s.reserve(32);
  AppendHex64(h.high64, &s);
  AppendHex64(h.low64, &s);
  return s;
}

bool IsEntryName(std::string_view name) {
  if (name.size() != 32) return false;
  for (char c : name)
    if (HexVal(c) < 0) return false;
  return true;
}

int ShardOfName(std::string_view name) {
  if (!IsEntryName(name)) return -1;
  return HexVal(name[0]) * 16 + HexVal(name[1]);
}

int ShardOfEntryName(std::string_view name) { return HexVal(name[0]) * 16 + HexVal(name[1]); }

std::string ShardDirName(int shard) {
  return std::string{kHex[(shard >> 4) & 0xf], kHex[shard & 0xf]};
}

std::string TempName() {
  // Unique per process and call; O_EXCL at creation catches the rest.
  thread_local std::mt19937_64 rng(std::random_device{}() ^ uint64_t(getpid()) << 32);
  std::string s = ".tmp." + std::to_string(CurrentPid()) + ".";
  AppendHex64(rng(), &s);
  return s;
}

bool IsTempName(std::string_view name) { return name.starts_with(".tmp."); }

int TempOwner(std::string_view name) {
  if (!IsTempName(name)) return 0;
  name.remove_prefix(5);
  int pid = 0;
  for (char c : name) {
    if (c == '.') return pid;
    if (c < '0' || c > '9' || pid > 100000000) return 0;
    pid = pid * 10 + (c - '0');
  }
  return 0;
}

std::string SpareName(int slot) { return ".spare." + std::to_string(slot); }

int SpareSlotOfName(std::string_view name) {
  if (!name.starts_with(".spare.") || name.size() != 8) return -1;
  int v = name[7] - '0';
  return v >= 0 && v < kSpareSlots ? v : -1;
}

}  // namespace regioncache::file
