// The ledger: the shared counts file, its validation and repair, and the shard
// locks (file_ledger.h); and the guard that survives a SIGBUS in its mapping.
#include "file/file_ledger.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <utility>

#include "core/fault_guard.h"
#include "file/file_io.h"
#include "regioncache/clock.h"

namespace regioncache::file {
namespace {

// The init lock sits beyond the shard bytes (a lock may lie past EOF).
constexpr off_t kInitLockByte = 1 << 20;

// Bounds no true count reaches; a slot beyond them was not written by a
// store (random bytes, another program) and is recounted.
constexpr int64_t kMaxShardBytes = int64_t(1) << 50;
constexpr int64_t kCountSlack = 1 << 16;  // counts a killed writer may leave below 0
constexpr int64_t kMaxTimeMs = int64_t(1) << 50;

// ------------------------------------------------------------ SIGBUS guard --
//
// A ledger is a shared mapping of a file, and a mapping of a file that
// another process cuts short (or, on a full tmpfs, a page that cannot be
// allocated) faults with SIGBUS. Such a fault in a ledger is repaired by the
// process's fault guard (core/fault_guard.h, GuardMappedFile) instead of
// killing the process: the file gets its size back (zeros past the cut,
// which the scans recount), or, if that does not help, the page is replaced
// by private zeros; either way the ledger is marked detached, so the store
// maps the ledger afresh at its next health check (FileStore::Health).
// Faults anywhere else go to the handler that was there before.

}  // namespace

Ledger::~Ledger() {
  UnguardMappedFile(reg_);
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
    return ErrnoStatus(
        region_, (lock ? "cannot lock the ledger " : "cannot unlock the ledger ") + path_, errno);
  }
}

Status Ledger::EnsureOwnFd() {
  pid_t me = CurrentPid();
  if (me == pid_) return Status::OK();
  std::lock_guard<std::mutex> g(fd_mu_);
  if (me == pid_) return Status::OK();
  // A new open file description of the same file, even if it was deleted
  // or replaced meanwhile (then the store's health check moves to the new
  // one): through /proc, else by name.
  std::string self = "/proc/self/fd/" + std::to_string(fd_);
  int fd = open(self.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) fd = OpenNoFollow(path_, O_RDWR);
  if (fd < 0)
    return ErrnoStatus(region_, "cannot reopen the ledger " + path_ + " after fork", errno);
  // Closing the inherited descriptor leaves the parent's locks alone: the
  // parent still holds its own descriptor of that open file description.
  // dup2 keeps the number, which the SIGBUS guard knows.
  dup2(fd, fd_);
  close(fd);
  pid_ = me;
  return Status::OK();
}

Status Ledger::OpenFile(int* out) {
  *out = -1;
  int fd = OpenNoFollow(path_, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0 && errno == EEXIST) fd = OpenNoFollow(path_, O_RDWR | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ELOOP)
      return Status::IOError(RegionMessage(
          region_, "refusing the ledger " + path_ +
                       ": it is a symbolic link; the store never follows links inside its "
                       "directory (remove the link)"));
    return ErrnoStatus(region_, "cannot open the ledger " + path_, err);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(region_, "cannot stat the ledger " + path_, err);
  }
  Status s = CheckOwned(st, S_IFREG, "ledger", path_, region_);
  if (s.ok() && st.st_nlink != 1)
    s = Status::IOError(RegionMessage(
        region_, "refusing the ledger " + path_ + ": it has " + std::to_string(st.st_nlink) +
                     " hard links; the ledger is the store's own file, linked only here"));
  if (!s.ok()) {
    close(fd);
    return s;
  }
  *out = fd;
  return Status::OK();
}

Status Ledger::SizeLocked(int fd, bool* sized_afresh, uint64_t* old_size) {
  *sized_afresh = false;
  struct stat st;
  if (fstat(fd, &st) != 0)
    return ErrnoStatus(region_, "cannot stat the ledger " + path_, errno);
  *old_size = uint64_t(st.st_size);
  if (uint64_t(st.st_size) == kSize) return Status::OK();
  *sized_afresh = true;
  // New, cut short or too long: give it its size. Never through 0: another
  // process may map it, and a mapping past the end of a file faults.
  if (uint64_t(st.st_size) > kSize && ftruncate(fd, off_t(kSize)) != 0)
    return ErrnoStatus(region_, "cannot size the ledger " + path_, errno);
  // Blocks are allocated now, so a full disk is an error here and not a
  // fault at the first counter written into a hole of the mapping.
  int err = posix_fallocate(fd, 0, off_t(kSize));
  if (err == EOPNOTSUPP || err == EINVAL) err = ftruncate(fd, off_t(kSize)) == 0 ? 0 : errno;
  if (err != 0)
    return ErrnoStatus(region_, "cannot size the ledger " + path_, err);
  return Status::OK();
}

bool Ledger::Plausible(const ShardSlot& s) const {
  const int64_t mb = max_bytes_;
  int64_t e = s.entries.load(std::memory_order_relaxed);
  int64_t b = s.bytes.load(std::memory_order_relaxed);
  int64_t sb = s.spare_bytes.load(std::memory_order_relaxed);
  int64_t tb = s.temp_bytes.load(std::memory_order_relaxed);
  int64_t old = s.oldest_ms.load(std::memory_order_relaxed);
  uint32_t sp = s.spares.load(std::memory_order_relaxed);
  return e >= -kCountSlack && e <= max_entries_ && b >= -mb && b <= mb && sb >= -mb &&
         sb <= mb && tb >= 0 && tb <= mb && old >= 0 && old <= kMaxTimeMs &&
         sp < (1u << kSpareSlots);
}

bool Ledger::ValidLocked(std::string* damage) const {
  if (mem_->magic != kLedgerMagic) {
    *damage = mem_->magic == 0 ? "not initialised" : "bad magic";
    return false;
  }
  if (mem_->version != kLedgerVersion || mem_->nshards != kShards) {
    *damage = "version " + std::to_string(mem_->version) + " with " +
              std::to_string(mem_->nshards) + " shards, not version " +
              std::to_string(kLedgerVersion) + " with " + std::to_string(kShards);
    return false;
  }
  for (int i = 0; i < kShards; ++i)
    if (!Plausible(mem_->slots[i])) {
      *damage = "impossible counts for shard " + std::to_string(i);
      return false;
    }
  return true;
}

void Ledger::ZeroLocked() {
  __atomic_store_n(&mem_->magic, uint64_t(0), __ATOMIC_RELEASE);
  std::memset(static_cast<void*>(&mem_->counters), 0, sizeof mem_->counters);
  mem_->errors.store(0, std::memory_order_relaxed);
  mem_->stampede_waits.store(0, std::memory_order_relaxed);
  std::memset(static_cast<void*>(mem_->slots), 0, sizeof mem_->slots);
  mem_->version = kLedgerVersion;
  mem_->nshards = kShards;
  mem_->created_ms = NowMs();
}

Status Ledger::Open(const std::string& path, const std::string& region, bool* fresh,
                    std::string* damage) {
  path_ = path;
  region_ = region;
  *fresh = false;
  damage->clear();
  Status s = OpenFile(&fd_);
  if (!s.ok()) return s;
  pid_ = CurrentPid();
  // No shard can count more bytes or files than the file system holds.
  struct statvfs vfs;
  if (fstatvfs(fd_, &vfs) == 0) {
    uint64_t total = 0;
    if (!__builtin_mul_overflow(uint64_t(vfs.f_blocks), uint64_t(vfs.f_frsize), &total) &&
        total > 0 && total < (uint64_t(1) << 50))
      max_bytes_ = std::max<int64_t>(int64_t(total), int64_t(1) << 30);
    if (vfs.f_files > 0 && vfs.f_files < (uint64_t(1) << 40))
      max_entries_ = std::max<int64_t>(int64_t(vfs.f_files), int64_t(1) << 20);
  }
  InitState init;
  if (!(s = LockInit(&init)).ok()) return s;
  void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    s = ErrnoStatus(region_, "cannot map the ledger " + path_, errno);
    RangeLock(kInitLockByte, false);
    return s;
  }
  mem_ = static_cast<Mem*>(p);
  reg_ = GuardMappedFile(reinterpret_cast<char*>(mem_), kSize, fd_);
  return SettleInit(init, false, fresh, damage);
}

Status Ledger::LockInit(InitState* init) {
  Status s = RangeLock(kInitLockByte, true);
  if (!s.ok()) return s;
  s = SizeLocked(fd_, &init->afresh, &init->old_size);
  if (!s.ok()) RangeLock(kInitLockByte, false);
  return s;
}

Status Ledger::SettleInit(const InitState& init, bool recount, bool* fresh, std::string* damage) {
  if (!init.afresh && !recount && ValidLocked(damage)) return RangeLock(kInitLockByte, false);
  if (init.afresh && init.old_size != 0)
    damage->assign("size " + std::to_string(init.old_size) + " bytes, not " +
                   std::to_string(kSize));
  ZeroLocked();
  *fresh = true;  // the caller counts the shards, then FinishInit()
  return Status::OK();
}

bool Ledger::Stale(std::string* why) {
  if (MappedFileDetached(reg_)) {
    *why = "it was cut short or could not be written under this process (SIGBUS caught)";
    cut_ = true;  // what was past the cut is lost: counted again (Reattach)
    return true;
  }
  struct stat mine, at;
  if (fstat(fd_, &mine) != 0) {
    *why = "fstat failed: " + ErrnoText(errno);
    return true;
  }
  if (mine.st_nlink == 0) {
    *why = "it was deleted";
    return true;
  }
  if (uint64_t(mine.st_size) != kSize) {
    *why = "its size changed to " + std::to_string(mine.st_size) + " bytes";
    return true;
  }
  if (lstat(path_.c_str(), &at) != 0) {
    *why = "it is gone from " + path_ + ": " + ErrnoText(errno);
    return true;
  }
  if (at.st_ino != mine.st_ino || at.st_dev != mine.st_dev) {
    *why = "another file took its name";
    return true;
  }
  return false;
}

bool Ledger::HeaderIntact() const {
  return __atomic_load_n(&mem_->magic, __ATOMIC_ACQUIRE) == kLedgerMagic &&
         mem_->version == kLedgerVersion && mem_->nshards == kShards;
}

Status Ledger::Reattach(bool* fresh, std::string* damage) {
  *fresh = false;
  damage->clear();
  int fd = -1;
  Status s = OpenFile(&fd);
  if (!s.ok()) return s;
  // No thread of this process holds a shard lock while the descriptor and
  // the mapping change under it.
  for (auto& m : shard_mu_) m.lock();
  {
    std::lock_guard<std::mutex> g(fd_mu_);
    void* p = mmap(mem_, kSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
      s = ErrnoStatus(region_, "cannot map the ledger " + path_, errno);
    } else {
      dup2(fd, fd_);  // the same number: the guard and the lock calls keep using it
      pid_ = CurrentPid();
      ClearMappedFileDetached(reg_);
    }
    close(fd);
  }
  for (auto& m : shard_mu_) m.unlock();
  if (!s.ok()) return s;
  // The file may have been short when mapped: it gets its size before the
  // mapping is read (a read past its end would fault).
  InitState init;
  if (!(s = LockInit(&init)).ok()) return s;
  bool cut = std::exchange(cut_, false);
  return SettleInit(init, cut, fresh, damage);
}

Status Ledger::Reinit(bool* fresh) {
  *fresh = false;
  Status s = EnsureOwnFd();
  if (!s.ok()) return s;
  if (!(s = RangeLock(kInitLockByte, true)).ok()) return s;
  if (HeaderIntact()) return RangeLock(kInitLockByte, false);  // another process did it
  ZeroLocked();
  *fresh = true;
  return Status::OK();
}

void Ledger::FinishInit() {
  // The magic goes last: a process that dies while counting leaves a ledger
  // the next opener starts again.
  __atomic_store_n(&mem_->magic, kLedgerMagic, __ATOMIC_RELEASE);
  msync(mem_, kSize, MS_ASYNC);
  RangeLock(kInitLockByte, false);
}

void Ledger::AbandonInit() { RangeLock(kInitLockByte, false); }

LedgerTotals Ledger::Totals() const {
  LedgerTotals t;
  int64_t e = 0, b = 0, tb = 0;
  for (int i = 0; i < kShards; ++i) {
    const auto& s = mem_->slots[i];
    if (!Plausible(s)) {
      if (t.implausible < 0) t.implausible = i;
      continue;
    }
    int64_t v = s.entries.load(std::memory_order_relaxed);
    if (v > 0) e += v;
    v = s.bytes.load(std::memory_order_relaxed);
    if (v > 0) b += v;
    tb += s.temp_bytes.load(std::memory_order_relaxed);
  }
  t.entries = uint64_t(e);
  t.bytes = uint64_t(b);
  t.temp_bytes = uint64_t(tb);
  return t;
}

uint64_t Ledger::BytesForBound() const {
  uint64_t n = 0;
  for (const auto& s : mem_->slots) {
    int64_t b = s.bytes.load(std::memory_order_relaxed);
    int64_t t = s.temp_bytes.load(std::memory_order_relaxed);
    n += uint64_t(b > 0 ? b : 0) + uint64_t(t > 0 ? t : 0);  // wraps on garbage: "over"
  }
  return n;
}

uint64_t Ledger::TotalEntries() const { return Totals().entries; }

uint64_t Ledger::TotalBytes() const { return Totals().bytes; }

uint64_t Ledger::TotalSpareBytes() const {
  int64_t n = 0;
  for (const auto& s : mem_->slots) {
    int64_t v = s.spare_bytes.load(std::memory_order_relaxed);
    if (v > 0 && v <= kMaxShardBytes) n += v;
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
