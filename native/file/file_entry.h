// Reading and writing one entry file. Nothing here locks or counts: the
// store decides what a bad or expired file means.
//
// Errors: a write that fails returns an IOError naming the region and the
// file. A read that finds damage returns Corruption (IOError if the
// system refused) whose message is the bare reason: the store logs it with
// the file's path ("damaged entry file <path>: <reason>") and answers a miss.
// ReadHead's Head is a result, not an error: absent and bad files are
// answers to the store's question "what is there".
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "file/file_format.h"
#include "regioncache/status.h"
#include "regioncache/store.h"

namespace regioncache::file {

// A byte buffer that, unlike std::string, does not zero what it grows by:
// every read of an entry fills it from the file, so zeroing it first would
// only cost a pass over memory.
class HeadBuf {
 public:
  char* data() { return p_.get(); }
  const char* data() const { return p_.get(); }
  size_t size() const { return size_; }
  // Keeps the first min(size(), n) bytes; the rest is unspecified.
  void resize(size_t n) {
    if (n > cap_) {
      auto q = std::make_unique_for_overwrite<char[]>(n);
      if (size_) std::memcpy(q.get(), p_.get(), size_);
      p_ = std::move(q);
      cap_ = n;
    }
    size_ = n;
  }
  void clear() { size_ = 0; }

 private:
  std::unique_ptr<char[]> p_;
  size_t size_ = 0, cap_ = 0;
};

// An entry file opened and its first bytes read (header, key, and for small
// entries the whole value). Closes the descriptor when destroyed.
struct OpenEntry {
  int fd = -1;
  ino_t ino = 0;       // 0 unless the read needed an fstat (see IsFileAt)
  uint64_t size = 0;
  EntryHeader h{};
  HeadBuf head;  // the file's first bytes: header, key, maybe value
  // With a lent first buffer (ReadHead's `first`): the value's first
  // `first_got` bytes, read into it; head then ends after the key.
  char* first = nullptr;
  size_t first_got = 0;

  OpenEntry() = default;
  OpenEntry(const OpenEntry&) = delete;
  OpenEntry& operator=(const OpenEntry&) = delete;
  ~OpenEntry();
  void Reset();  // closes the file, forgets what was read
  std::string_view key() const {
    return std::string_view(head.data(), head.size()).substr(kHeaderSize, h.key_len);
  }
};

enum class Head { kOk, kAbsent, kBad };

// Whether the file at path is still the one o read, as it was: same inode,
// same size, same first bytes. With the shard lock held this makes removing
// it safe even though a reused inode can come back under its old name.
bool IsFileAt(const OpenEntry& o, const std::string& path);

// Opens path (read-only, or read-write for touch) and reads at least the
// header and key, up to `want` bytes. kBad: *why says what is wrong
// (o->ino is set when the file could be opened). An IOError only for what is
// not the file's fault (EACCES, EIO, EMFILE, ...), naming the region.
//
// With `first` (a caller's buffer, see ReadTarget) and the length of the key
// looked for, one preadv reads the header and key into head and the value
// on into `first`; if the file's key has another length, those bytes are
// moved to head and the read goes on as without.
Status ReadHead(std::string_view region, const std::string& path, bool writable, size_t want,
                OpenEntry* o, Head* result, std::string* why, std::span<char> first = {},
                size_t key_len = 0);

// Reads the value of an entry ReadHead accepted into out->data (directly
// into the string for large values), checks the body checksum and
// decompresses. With out->target, an uncompressed value is left where
// ReadHead put it (out->at) or read into the target's Whole buffer.
// Corruption on a damaged file, IOError on a failed read, each with the
// reason as its message.
Status ReadValue(OpenEntry* o, Value* out);

// Checks the body checksum without keeping the value (streams the file).
Status VerifyBody(OpenEntry* o);

// What to write: the header is filled (and sealed) by BuildEntry.
struct NewEntry {
  EntryHeader h{};
  std::string_view key;
  std::string_view stored;  // the value as stored (maybe compressed)
  std::string compressed;   // owns the compressed bytes when used
  uint64_t FileSize() const { return kHeaderSize + key.size() + stored.size(); }
};

// Fills e from the caller's entry, compressing with zstd at `level` when
// compress_min > 0 and the value is at least that long and shrinks.
void BuildEntry(std::string_view key, std::string_view data, uint32_t flags, int64_t expires_ms,
                int64_t now_ms, uint64_t compress_min, int level, NewEntry* e);

// Writes e to a new temporary file in dir (creating dir, mode 0700, if it is
// missing) and returns its path in *tmp. With sync, the data reach the disk
// before this returns. On failure no temporary file is left behind.
Status WriteTemp(const std::string& dir, const NewEntry& e, bool sync, std::string_view region,
                 std::string* tmp);

// Writes e into fd, a file open for writing at offset 0 that was `had`
// bytes long (a reused spare file, or 0 for a new one), cuts it to the
// entry's size and closes it; fd is closed either way. IOError "cannot
// write <path>" (path: where fd was opened, for the message).
Status FillAndClose(int fd, const NewEntry& e, uint64_t had, bool sync, std::string_view region,
                    const std::string& path);

// Rewrites expires_ms (and its checksum) in place: a 16-byte pwrite.
// IOError "cannot rewrite the expiry of <path>".
Status RewriteExpiry(OpenEntry* o, int64_t expires_ms, bool sync, std::string_view region,
                     const std::string& path);

}  // namespace regioncache::file
