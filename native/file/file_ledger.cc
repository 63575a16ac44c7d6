#include "file/file_ledger.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "file/file_io.h"
#include "regioncache/clock.h"

namespace regioncache::file {
namespace {

// The init lock sits beyond the shard bytes (a lock may lie past EOF).
constexpr off_t kInitLockByte = 1 << 20;

}  // namespace

Ledger::~Ledger() {
  if (mem_) munmap(mem_, kSize);
  if (fd_ >= 0) close(fd_);
}

Status Ledger::RangeLock(off_t start, bool lock) {
  struct flock fl;
  std::memset(&fl, 0, sizeof fl);
  fl.l_type = lock ? F_WRLCK : F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = 1;
  for (;;) {
    if (fcntl(fd_, lock ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0) return Status::OK();
    if (errno == EINTR) continue;
    return Status::IOError(where_ + "cannot " + (lock ? "" : "un") + "lock the ledger " + path_ +
                           ": " + ErrnoText(errno));
  }
}

Status Ledger::EnsureOwnFd() {
  pid_t me = CurrentPid();
  if (me == pid_) return Status::OK();
  std::lock_guard<std::mutex> g(fd_mu_);
  if (me == pid_) return Status::OK();
  int fd = open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return Status::IOError(where_ + "cannot reopen the ledger " + path_ + " after fork: " +
                           ErrnoText(errno));
  // Closing the inherited descriptor leaves the parent's locks alone: the
  // parent still holds its own descriptor of that open file description.
  close(fd_);
  fd_ = fd;
  pid_ = me;
  return Status::OK();
}

Status Ledger::Open(const std::string& path, const std::string& where, bool* fresh) {
  path_ = path;
  where_ = where;
  *fresh = false;
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) return Status::IOError(where + "cannot open the ledger " + path + ": " + ErrnoText(errno));
  pid_ = CurrentPid();
  Status s = RangeLock(kInitLockByte, true);
  if (!s.ok()) return s;
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    s = Status::IOError(where + "cannot stat " + path + ": " + ErrnoText(errno));
    RangeLock(kInitLockByte, false);
    return s;
  }
  bool right_size = uint64_t(st.st_size) == kSize;
  if (!right_size) {
    // New, or not a ledger of this version: start it afresh. Zero bytes
    // first, so any process still mapping the old one sees counts of 0
    // rather than garbage.
    if (ftruncate(fd_, 0) != 0 || ftruncate(fd_, kSize) != 0) {
      s = Status::IOError(where + "cannot size the ledger " + path + ": " + ErrnoText(errno));
      RangeLock(kInitLockByte, false);
      return s;
    }
  }
  void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    s = Status::IOError(where + "cannot map the ledger " + path + ": " + ErrnoText(errno));
    RangeLock(kInitLockByte, false);
    return s;
  }
  mem_ = static_cast<Mem*>(p);
  if (right_size && mem_->magic == kLedgerMagic && mem_->version == kLedgerVersion &&
      mem_->nshards == kShards) {
    return RangeLock(kInitLockByte, false);
  }
  if (right_size) std::memset(static_cast<void*>(mem_), 0, kSize);
  mem_->version = kLedgerVersion;
  mem_->nshards = kShards;
  mem_->created_ms = NowMs();
  *fresh = true;  // the caller counts the shards, then FinishInit()
  return Status::OK();
}

void Ledger::FinishInit() {
  // The magic goes last: a process that dies while counting leaves a ledger
  // the next opener starts again.
  __atomic_store_n(&mem_->magic, kLedgerMagic, __ATOMIC_RELEASE);
  msync(mem_, kSize, MS_ASYNC);
  RangeLock(kInitLockByte, false);
}

uint64_t Ledger::TotalEntries() const {
  int64_t n = 0;
  for (const auto& s : mem_->slots) {
    int64_t v = s.entries.load(std::memory_order_relaxed);
    if (v > 0) n += v;
  }
  return uint64_t(n);
}

uint64_t Ledger::TotalBytes() const {
  int64_t n = 0;
  for (const auto& s : mem_->slots) {
    int64_t v = s.bytes.load(std::memory_order_relaxed);
    if (v > 0) n += v;
  }
  return uint64_t(n);
}

uint64_t Ledger::TotalSpareBytes() const {
  int64_t n = 0;
  for (const auto& s : mem_->slots) {
    int64_t v = s.spare_bytes.load(std::memory_order_relaxed);
    if (v > 0) n += v;
  }
  return uint64_t(n);
}

Status Ledger::LockShard(int shard) {
  Status s = EnsureOwnFd();
  if (!s.ok()) return s;
  shard_mu_[shard].lock();
  s = RangeLock(shard, true);
  if (!s.ok()) shard_mu_[shard].unlock();
  return s;
}

void Ledger::UnlockShard(int shard) {
  RangeLock(shard, false);
  shard_mu_[shard].unlock();
}

}  // namespace regioncache::file
