// FileStore (file_store.h): the cache directory and its shard directories --
// the periodic health check (directory and ledger repaired), and opening or
// making a shard directory safely.

#include "file/file_store.h"

namespace regioncache::file {

Status FileStore::Health(bool force, bool* repaired, bool create) {
  if (repaired) *repaired = false;
  int64_t now = CoarseMs();
  if (!force && now < next_health_.load(std::memory_order_relaxed)) return Status::OK();
  std::lock_guard<std::mutex> g(health_mu_);
  if (!force && now < next_health_.load(std::memory_order_relaxed)) return Status::OK();
  next_health_.store(now + kHealthEveryMs, std::memory_order_relaxed);
  bool fixed = false;
  // The directory: removed under a running site (a tmp cleaner, rm -rf),
  // it is made again, as Django's FileBasedCache does; one made meanwhile
  // by another user, or opened up to others, is refused.
  struct stat st;
  if (lstat(dir_.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return ErrnoStatus(region(), "cannot stat the cache directory " + dir_, errno);
    if (!create) return Status::OK();  // a read finds nothing; a write makes it again
    Status s = file::MakeDirs(dir_, region());
    if (!s.ok()) return s;
    if (lstat(dir_.c_str(), &st) != 0)
      return ErrnoStatus(region(), "cannot stat the cache directory " + dir_, errno);
    Log(LogLevel::kWarning, region(), kind(),
        "the cache directory " + dir_ + " was removed; made it again (mode 0700)");
    fixed = true;
  }
  Status s = file::CheckOwned(st, S_IFDIR, "cache directory", dir_, region());
  if (!s.ok()) return s;
  // The ledger: every process must map the one file at its name.
  std::string why, damage;
  bool fresh = false;
  if (ledger_->Stale(&why)) {
    if (!(s = ledger_->Reattach(&fresh, &damage)).ok()) return s;
    Log(LogLevel::kWarning, region(), kind(),
        "the ledger " + ledger_->path() + " was no longer the one mapped (" + why + "); " +
            (fresh ? "made a new one and counted the shards" : "now using the one there"));
    fixed = true;
  } else if (!ledger_->HeaderIntact()) {
    if (!(s = ledger_->Reinit(&fresh)).ok()) return s;
    if (fresh)
      Log(LogLevel::kWarning, region(), kind(),
          "the ledger " + ledger_->path() + " had its header overwritten; counted the shards again");
  }
  if (fresh) {
    // A shard that cannot be counted (refused) counts as empty; the rest
    // of the region goes on working, and that shard's operations fail.
    s = RecountAll();
    ledger_->FinishInit();
    if (!s.ok()) Log(LogLevel::kError, region(), kind(), s.message());
    fixed = true;
  }
  // Counts no store writes (random bytes in the ledger): that shard is
  // counted again from its directory.
  for (int i = 0; i < kShards; ++i) {
    int bad = ledger_->Totals().implausible;
    if (bad < 0) break;
    Log(LogLevel::kWarning, region(), kind(),
        "the ledger " + ledger_->path() + " held impossible counts for shard " +
            file::ShardDirName(bad) + "; counted it again");
    RecountShard(bad);
    fixed = true;
  }
  if (repaired) *repaired = fixed;
  return Status::OK();
}

Status FileStore::PrepareShard(int shard) {
  std::string path = ShardPath(shard);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return ErrnoStatus(region(), "cannot stat " + path, errno);
    // Missing: the whole directory may have been removed, or removed and
    // made again by someone else. Checked before anything is made in it.
    if (lstat(dir_.c_str(), &st) != 0)
      return ErrnoStatus(region(), "the cache directory " + dir_ + " is gone", errno);
    Status s = file::CheckOwned(st, S_IFDIR, "cache directory", dir_, region());
    if (!s.ok()) return s;
    if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
      return ErrnoStatus(region(), "cannot create " + path, errno);
    if (lstat(path.c_str(), &st) != 0)
      return ErrnoStatus(region(), "cannot stat " + path, errno);
  }
  return file::CheckOwned(st, S_IFDIR, "shard directory", path, region());
}

Status FileStore::OpenShardDir(int shard, DIR** d, bool* missing) {
  *d = nullptr;
  *missing = false;
  std::string path = ShardPath(shard);
  int fd = file::OpenNoFollow(path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      *missing = true;
      return Status::OK();
    }
    if (err == ELOOP || err == ENOTDIR) {
      struct stat st;
      if (lstat(path.c_str(), &st) == 0)
        return file::CheckOwned(st, S_IFDIR, "shard directory", path, region());
    }
    return ErrnoStatus(region(), "cannot open the shard directory " + path, err);
  }
  struct stat st;
  Status s = fstat(fd, &st) == 0
                 ? file::CheckOwned(st, S_IFDIR, "shard directory", path, region())
                 : ErrnoStatus(region(), "cannot stat " + path, errno);
  if (!s.ok()) {
    close(fd);
    return s;
  }
  *d = fdopendir(fd);
  if (!*d) {
    int err = errno;
    close(fd);
    return ErrnoStatus(region(), "cannot list " + path, err);
  }
  return Status::OK();
}

}  // namespace regioncache::file
