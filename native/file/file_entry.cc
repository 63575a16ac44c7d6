// Reading, checking and writing one entry file (file_entry.h).
#include "file/file_entry.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "file/file_io.h"
#include "regioncache/codec.h"
#include "core/compress.h"

namespace regioncache::file {
namespace {

constexpr int kExpiryRetries = 4;
constexpr size_t kStreamChunk = 1 << 20;
// Reads of a value, checksummed one chunk at a time: small enough to stay in
// the L2 cache between the read and the checksum.
constexpr size_t kReadChunk = 256 << 10;

// The first read may have caught a touch half-way through its 16-byte
// pwrite; only a mismatch that persists is damage.
bool SettleExpiry(OpenEntry* o) {
  for (int i = 0; i < kExpiryRetries; ++i) {
    if (ExpiryIntact(o->h)) return true;
    sched_yield();
    char buf[kTouchBytes];
    if (PReadFull(o->fd, buf, kTouchBytes, kTouchOffset) != ssize_t(kTouchBytes)) return false;
    std::memcpy(reinterpret_cast<char*>(&o->h) + kTouchOffset, buf, kTouchBytes);
    std::memcpy(o->head.data() + kTouchOffset, buf, kTouchBytes);
  }
  return ExpiryIntact(o->h);
}

}  // namespace

OpenEntry::~OpenEntry() {
  if (fd >= 0) close(fd);
}

bool IsFileAt(const OpenEntry& o, const std::string& path) {
  if (o.fd < 0) return false;
  struct stat at, mine;
  if (lstat(path.c_str(), &at) != 0 || fstat(o.fd, &mine) != 0) return false;
  if (at.st_ino != mine.st_ino || at.st_dev != mine.st_dev || uint64_t(mine.st_size) != o.size)
    return false;
  size_t n = std::min<size_t>(o.head.size(), kHeaderSize);
  char buf[kHeaderSize];
  return PReadFull(o.fd, buf, n, 0) == ssize_t(n) && std::memcmp(buf, o.head.data(), n) == 0;
}

void OpenEntry::Reset() {
  if (fd >= 0) close(fd);
  fd = -1;
  ino = 0;
  size = 0;
  h = EntryHeader{};
  head.clear();
}

Status ReadHead(std::string_view region, const std::string& path, bool writable, size_t want,
                OpenEntry* o, Head* result, std::string* why, std::span<char> first,
                size_t key_len) {
  *result = Head::kBad;
  o->first = nullptr;
  o->first_got = 0;
  // O_NONBLOCK: a FIFO planted under an entry name must not hang the open.
  // No link is followed, in the shard directory's name either (OpenNoFollow).
  o->fd = OpenNoFollow(path, (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK);
  if (o->fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      *result = Head::kAbsent;
      return Status::OK();
    }
    if (err == ELOOP) {  // a symbolic link where an entry file or its shard belongs
      *why = "a symbolic link (the entry file or its shard directory), never followed";
      return Status::OK();
    }
    return ErrnoStatus(region, "cannot open " + path, err);
  }
  // One read of `want` bytes (or of header and key, then `first`); a short
  // one reached the end of the file and so gives its size without an fstat
  // (most entries are read whole here). A single call: on a regular file a
  // short count is the end of the file, so no second call is needed to see
  // a 0. (A file rewritten under us is caught by the checks below, and the
  // read is retried from the open.)
  size_t hn = first.empty() ? std::max<size_t>(want, kHeaderSize) : kHeaderSize + key_len;
  size_t n = hn + first.size();
  o->head.resize(hn);
  ssize_t r;
  if (first.empty()) {
    r = PReadOnce(o->fd, o->head.data(), n, 0);
  } else {
    iovec iov[2] = {{o->head.data(), hn}, {first.data(), first.size()}};
    do r = preadv(o->fd, iov, 2, 0);
    while (r < 0 && errno == EINTR);
  }
  if (r < 0) {
    int err = errno;
    if (err != EISDIR && err != ESPIPE && err != EINVAL && err != EAGAIN)
      return ErrnoStatus(region, "cannot read " + path, err);
    struct stat st;
    if (fstat(o->fd, &st) == 0) o->ino = st.st_ino;
    o->head.clear();
    *why = "not a regular file";
    return Status::OK();
  }
  if (size_t(r) < n) {
    o->size = uint64_t(r);
  } else {
    struct stat st;
    if (fstat(o->fd, &st) != 0)
      return ErrnoStatus(region, "cannot stat " + path, errno);
    o->ino = st.st_ino;
    o->size = uint64_t(st.st_size);
    if (o->size < n) {
      *why = "shrank while being read";
      return Status::OK();
    }
  }
  if (size_t(r) < hn) {
    o->head.resize(size_t(r));
  } else if (size_t(r) > hn) {
    o->first = first.data();
    o->first_got = size_t(r) - hn;
  }
  if (o->size < kHeaderSize) {
    *why = "truncated: " + std::to_string(o->size) + " bytes, shorter than a header";
    return Status::OK();
  }
  std::memcpy(&o->h, o->head.data(), kHeaderSize);
  if (!HeaderPlausible(o->h, o->size, why)) return Status::OK();
  if (o->first_got && o->h.key_len != key_len) {
    // Not the key looked for: what went to `first` is more of its key.
    size_t have = o->head.size();
    o->head.resize(have + o->first_got);
    std::memcpy(o->head.data() + have, o->first, o->first_got);
    o->first = nullptr;
    o->first_got = 0;
  }
  size_t head_need = kHeaderSize + size_t(o->h.key_len);
  if (o->head.size() < head_need) {
    size_t have = o->head.size();
    o->head.resize(head_need);
    r = PReadFull(o->fd, o->head.data() + have, head_need - have, off_t(have));
    if (r < 0) return ErrnoStatus(region, "cannot read " + path, errno);
    if (size_t(r) < head_need - have) {
      *why = "shrank while being read";
      return Status::OK();
    }
  }
  if (!SettleExpiry(o)) {
    *why = "expiry field damaged (checksum mismatch)";
    return Status::OK();
  }
  *result = Head::kOk;
  return Status::OK();
}

Status ReadValue(OpenEntry* o, Value* out) {
  const EntryHeader& h = o->h;
  bool zstd = (h.flags & kFlagZstd) != 0;
  uint64_t start = kHeaderSize + uint64_t(h.key_len);
  out->at = nullptr;
  out->len = 0;
  // The value's first bytes, already read: into the caller's first buffer,
  // or into head after the key.
  const char* pre;
  uint64_t pre_len;
  if (o->first) {
    pre = o->first;
    pre_len = std::min<uint64_t>(o->first_got, h.value_len);
  } else {
    pre = o->head.data() + start;
    pre_len = o->head.size() > start ? std::min<uint64_t>(o->head.size() - start, h.value_len) : 0;
  }
  BodySum sum;
  sum.Begin(h);
  sum.Update(o->head.data() + kHeaderSize, h.key_len);
  std::string compressed;
  const char* whole;  // the stored value, complete
  if (pre_len == h.value_len) {
    // All there already: checked where it lies, no copy.
    sum.Update(pre, size_t(pre_len));
    whole = pre;
  } else {
    // The rest is read straight into the destination (the caller's Whole
    // buffer, or data): one copy from the kernel for an uncompressed value.
    // It is read in chunks, each checksummed right after its read while it
    // is still in the CPU cache: one pass over memory instead of two.
    char* dst = nullptr;
    if (zstd) {
      compressed.resize(size_t(h.value_len));
      dst = compressed.data();
    } else if (out->target) {
      dst = out->target->Whole(size_t(h.value_len));
    }
    if (!dst) {
      out->data.resize(size_t(h.value_len));
      dst = out->data.data();
    }
    if (pre_len) {
      std::memcpy(dst, pre, size_t(pre_len));
      sum.Update(dst, size_t(pre_len));
    }
    for (uint64_t pos = pre_len; pos < h.value_len;) {
      size_t n = size_t(std::min<uint64_t>(kReadChunk, h.value_len - pos));
      ssize_t r = PReadFull(o->fd, dst + pos, n, off_t(start + pos));
      if (r < 0) return Status::IOError("read failed: " + ErrnoText(errno));
      if (size_t(r) < n) return Status::Corruption("shrank while being read");
      sum.Update(dst + pos, n);
      pos += n;
    }
    whole = dst;
  }
  if (sum.Digest() != h.body_sum) return Status::Corruption("checksum mismatch");
  if (zstd) {
    out->data.resize(size_t(h.raw_len));
    std::string zerr;
    if (!Decompress(std::string_view(whole, size_t(h.value_len)), out->data.data(),
                    out->data.size(), &zerr)) {
      out->data.clear();
      return Status::Corruption("zstd frame does not decompress to the recorded size (" + zerr +
                                ")");
    }
  } else if (whole == o->head.data() + start) {
    out->data.assign(whole, size_t(h.value_len));  // in the store's buffer: copied out
  } else if (whole != out->data.data()) {
    out->at = whole;  // in one of the caller's buffers (first or whole)
    out->len = size_t(h.value_len);
  }
  out->flags = h.flags & ~uint32_t(kFlagZstd);
  out->expires_ms = h.expires_ms;
  return Status::OK();
}

Status VerifyBody(OpenEntry* o) {
  const EntryHeader& h = o->h;
  BodySum sum;
  sum.Begin(h);
  sum.Update(o->head.data() + kHeaderSize, h.key_len);
  uint64_t pos = kHeaderSize + uint64_t(h.key_len);
  uint64_t end = o->size;
  if (o->head.size() > pos) {
    sum.Update(o->head.data() + pos, o->head.size() - pos);
    pos = o->head.size();
  }
  std::vector<char> buf(size_t(std::min<uint64_t>(kStreamChunk, end - pos)));
  while (pos < end) {
    size_t n = size_t(std::min<uint64_t>(buf.size(), end - pos));
    ssize_t r = PReadFull(o->fd, buf.data(), n, off_t(pos));
    if (r < 0) return Status::IOError("read failed: " + ErrnoText(errno));
    if (size_t(r) < n) return Status::Corruption("shrank while being read");
    sum.Update(buf.data(), n);
    pos += n;
  }
  if (sum.Digest() != h.body_sum) return Status::Corruption("checksum mismatch");
  return Status::OK();
}

void BuildEntry(std::string_view key, std::string_view data, uint32_t flags, int64_t expires_ms,
                int64_t now_ms, uint64_t compress_min, int level, NewEntry* e) {
  e->key = key;
  e->stored = data;
  uint32_t stored_flags = flags;
  if (compress_min > 0 && data.size() >= compress_min) {
    // Kept only when it saves something; otherwise the plain value is stored.
    if (Compress(data, level, data.size() - 1, &e->compressed)) {
      e->stored = e->compressed;
      stored_flags |= kFlagZstd;
    }
  }
  EntryHeader& h = e->h;
  std::memset(&h, 0, sizeof h);
  h.magic = kMagic;
  h.version = kVersion;
  h.header_size = kHeaderSize;
  h.flags = stored_flags;
  h.key_len = uint32_t(key.size());
  h.value_len = e->stored.size();
  h.raw_len = data.size();
  h.stored_ms = now_ms;
  h.expires_ms = expires_ms;
  BodySum sum;
  sum.Begin(h);
  sum.Update(key.data(), key.size());
  sum.Update(e->stored.data(), e->stored.size());
  h.body_sum = sum.Digest();
  SealExpiry(&h);
}

Status WriteTemp(const std::string& dir, const NewEntry& e, bool sync, std::string_view region,
                 std::string* tmp) {
  int fd = -1;
  for (int attempt = 0; attempt < 3 && fd < 0; ++attempt) {
    *tmp = dir + "/" + TempName();
    fd = OpenNoFollow(*tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) break;
    int err = errno;
    if (err == ENOENT) {
      // The shard directory is made on first use.
      if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        return ErrnoStatus(region, "cannot create " + dir, errno);
      continue;
    }
    if (err == EEXIST) continue;
    if (err == ELOOP)
      return Status::IOError(RegionMessage(
          region, "refusing to write in " + dir +
                      ": it is a symbolic link, never followed inside the store's directory"));
    return ErrnoStatus(region, "cannot create " + *tmp, err);
  }
  if (fd < 0)
    return Status::IOError(RegionMessage(region, "cannot create a temporary file in " + dir));
  Status s = FillAndClose(fd, e, 0, sync, region, *tmp);
  if (!s.ok()) unlink(tmp->c_str());
  return s;
}

Status FillAndClose(int fd, const NewEntry& e, uint64_t had, bool sync, std::string_view region,
                    const std::string& path) {
  struct iovec iov[3];
  iov[0] = {const_cast<EntryHeader*>(&e.h), kHeaderSize};
  iov[1] = {const_cast<char*>(e.key.data()), e.key.size()};
  iov[2] = {const_cast<char*>(e.stored.data()), e.stored.size()};
  int err = WriteAllV(fd, iov, 3);
  // Cut to the new size (never to 0, which on ext4 would flush on close).
  if (err == 0 && had > e.FileSize() && ftruncate(fd, off_t(e.FileSize())) != 0) err = errno;
  if (err == 0 && sync && fdatasync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  return err == 0 ? Status::OK() : ErrnoStatus(region, "cannot write " + path, err);
}

Status RewriteExpiry(OpenEntry* o, int64_t expires_ms, bool sync, std::string_view region,
                     const std::string& path) {
  o->h.expires_ms = expires_ms;
  SealExpiry(&o->h);
  int err = PWriteFull(o->fd, reinterpret_cast<const char*>(&o->h) + kTouchOffset, kTouchBytes,
                       kTouchOffset);
  if (err == 0 && sync && fdatasync(o->fd) != 0) err = errno;
  return err == 0 ? Status::OK() : ErrnoStatus(region, "cannot rewrite the expiry of " + path, err);
}

}  // namespace regioncache::file
