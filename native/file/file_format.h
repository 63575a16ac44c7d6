// The layout of one entry file and of the names in a store's directory.
// FORMAT.md is the prose for this file and must change with it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace regioncache::file {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "entry files are little-endian; a big-endian host needs byte swapping here");

inline constexpr uint32_t kMagic = 0x46434752;  // the bytes "RGCF"
inline constexpr uint16_t kVersion = 1;
inline constexpr uint32_t kHeaderSize = 64;
inline constexpr int kShards = 256;             // one directory level, "00".."ff"
// A compressed value claims its original size; nothing legitimate is larger.
inline constexpr uint64_t kMaxRawLen = uint64_t(1) << 40;

// The first 64 bytes of every entry file, stored as is (little-endian).
// Bytes [0, 40) are covered by body_sum together with the key and the stored
// value; bytes [40, 64) are the only ones ever rewritten in place (by touch),
// and expiry_sum covers them on their own, so a touch is one 16-byte pwrite
// and never needs the value.
struct EntryHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t header_size;
  uint32_t flags;       // the caller's codec flags, plus kFlagZstd if compressed here
  uint32_t key_len;
  uint64_t value_len;   // bytes of value stored in the file
  uint64_t raw_len;     // bytes of value the caller gave (== value_len unless compressed)
  int64_t stored_ms;    // when it was written, epoch ms
  uint64_t body_sum;    // XXH3-64 (seed kBodySeed) of bytes [0,40) + key + stored value
  int64_t expires_ms;   // epoch ms, 0 = never
  uint64_t expiry_sum;  // XXH3-64 (seed kExpirySeed) of body_sum + expires_ms (bytes [40,56))
};
static_assert(sizeof(EntryHeader) == kHeaderSize);

inline constexpr uint64_t kBodySeed = 0x72656769'6f6e4631ull;    // "regionF1"
inline constexpr uint64_t kExpirySeed = 0x65787069'72794631ull;  // "expiryF1"
inline constexpr size_t kBodySumCovers = 40;   // header bytes under body_sum
inline constexpr size_t kTouchOffset = 48;     // expires_ms, then expiry_sum
inline constexpr size_t kTouchBytes = 16;

// Fills expiry_sum from body_sum and expires_ms.
void SealExpiry(EntryHeader* h);
bool ExpiryIntact(const EntryHeader& h);

// Checks what can be checked without the key and value: magic, version,
// lengths against the file's size. On failure *why says what was wrong.
bool HeaderPlausible(const EntryHeader& h, uint64_t file_size, std::string* why);

// Incremental body checksum: Begin with the header, then feed key and value.
class BodySum {
 public:
  BodySum();
  ~BodySum();
  BodySum(const BodySum&) = delete;
  BodySum& operator=(const BodySum&) = delete;
  void Begin(const EntryHeader& h);
  void Update(const void* p, size_t n);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t*
};

// The file name of a key: XXH3-128 of the full key as 32 lower-case hex
// digits. Its first two digits name the shard directory.
std::string EntryName(std::string_view key);
int ShardOfName(std::string_view name);  // -1 unless name is an entry name
int ShardOfEntryName(std::string_view name);  // for a name EntryName made (not checked)
bool IsEntryName(std::string_view name);
std::string ShardDirName(int shard);     // "00".."ff"

// Temporary files: ".tmp.<pid>.<random hex>" in the shard directory (or the
// store directory for the writability probe). Never an entry name.
std::string TempName();
bool IsTempName(std::string_view name);
// The writer's pid in a temporary file's name (0 if it has none).
int TempOwner(std::string_view name);

// Spare files: ".spare.0" .. ".spare.<kSpareSlots-1>" in a shard directory,
// retired entry files kept for reuse (FORMAT.md, "Inode reuse").
inline constexpr int kSpareSlots = 8;
std::string SpareName(int slot);
int SpareSlotOfName(std::string_view name);  // -1 unless a spare name

}  // namespace regioncache::file
