// FileStore (file_store.h): writing an entry file and putting it in place,
// with spare-inode recycling (shared spare slots and own spares).

#include "file/file_store.h"

#include <stdio.h>  // renameat2, RENAME_EXCHANGE

namespace regioncache::file {

bool FileStore::Retire(int shard, int dfd, const std::string& name, uint64_t size, bool reuse) {
  auto& slot = ledger_->slot(shard);
  if (reuse && size <= kSpareMax) {
    uint32_t bits = slot.spares.load(std::memory_order_acquire);
    uint32_t full = (1u << file::kSpareSlots) - 1;
    if ((bits & full) != full && ledger_->TotalSpareBytes() + size <= spare_budget_) {
      int i = __builtin_ctz(~bits);
      std::string spare = dfd == AT_FDCWD ? ShardPath(shard) + "/" + file::SpareName(i)
                                          : file::SpareName(i);
      if (renameat(dfd, name.c_str(), dfd, spare.c_str()) == 0) {
        slot.spare_bytes.fetch_add(int64_t(size), std::memory_order_relaxed);
        slot.spares.fetch_or(1u << i, std::memory_order_release);
        return true;
      }
    }
  }
  return unlinkat(dfd, name.c_str(), 0) == 0;
}

void FileStore::CheckFork() {
  pid_t me = file::CurrentPid();
  if (me == mine_pid_.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> g(mine_mu_);
  if (me == mine_pid_.load(std::memory_order_acquire)) return;
  for (auto& m : mine_) m.store(kMineFree, std::memory_order_relaxed);
  mine_prefix_ = file::TempName();
  mine_pid_.store(me, std::memory_order_release);
}

void FileStore::TakeOld(int shard, const Temp& tmp) {
  auto& slot = ledger_->slot(shard);
  struct stat old;
  if (lstat(tmp.path.c_str(), &old) != 0) {
    // Swept already (it kept the old entry's mtime): nothing to keep.
    if (tmp.mine) mine_[shard].store(kMineFree, std::memory_order_release);
    return;
  }
  uint64_t size = uint64_t(old.st_size);
  slot.bytes.fetch_sub(int64_t(size), std::memory_order_relaxed);
  bool regular = S_ISREG(old.st_mode);
  if (tmp.mine && regular && size <= kSpareMax) {
    mine_[shard].store(size + kMineHas, std::memory_order_release);
    return;
  }
  Retire(shard, tmp.path, size, regular);
  if (tmp.mine) mine_[shard].store(kMineFree, std::memory_order_release);
}

Status FileStore::CommitLocked(int shard, const std::string& name, const Temp& tmp, uint64_t size,
                               bool* vanished) {
  *vanished = false;
  std::string path = PathOf(shard, name);
  auto& slot = ledger_->slot(shard);
  auto count_new = [&] {
    if (slot.entries.fetch_add(1, std::memory_order_relaxed) <= 0)
      slot.oldest_ms.store(NowMs(), std::memory_order_relaxed);  // the first entry is the oldest
    slot.bytes.fetch_add(int64_t(size), std::memory_order_relaxed);
  };
  if (exchange_ok_.load(std::memory_order_relaxed)) {
    // One atomic exchange: the entry name holds the old file or the new one,
    // never neither, and the old file lands on our temporary name, to be
    // rewritten by this process's next write into the shard (FORMAT.md, "Own spares").
    // ext4 starts no writeback on an exchange (it does on a rename over an
    // existing file, auto_da_alloc).
    if (renameat2(AT_FDCWD, tmp.path.c_str(), AT_FDCWD, path.c_str(), RENAME_EXCHANGE) == 0) {
      count_new();
      slot.entries.fetch_sub(1, std::memory_order_relaxed);  // the old one left
      TakeOld(shard, tmp);
      return Status::OK();
    }
    int err = errno;
    if (err == ENOENT) {
      // No entry yet (a new key), or our temporary file was swept.
      if (rename(tmp.path.c_str(), path.c_str()) == 0) {
        count_new();
        if (tmp.mine) mine_[shard].store(kMineFree, std::memory_order_release);
        return Status::OK();
      }
      err = errno;
      if (tmp.mine) mine_[shard].store(kMineFree, std::memory_order_release);
      if (err == ENOENT) {
        *vanished = true;
        return Status::OK();
      }
      unlink(tmp.path.c_str());
      return ErrnoStatus(region(), "cannot rename " + tmp.path + " to " + path, err);
    }
    if (err != EINVAL && err != ENOSYS && err != EOPNOTSUPP) {
      if (tmp.mine) mine_[shard].store(kMineFree, std::memory_order_release);
      unlink(tmp.path.c_str());
      return ErrnoStatus(region(), "cannot exchange " + tmp.path + " with " + path, err);
    }
    // A file system without exchange: move the old file away, then rename.
    exchange_ok_.store(false, std::memory_order_relaxed);
  }
  struct stat old;
  if (lstat(tmp.path.c_str(), &old) != 0) {
    if (tmp.mine) mine_[shard].store(kMineFree, std::memory_order_release);
    *vanished = true;
    return Status::OK();
  }
  // The old file leaves its name before the rename rather than being
  // replaced by it: it can then be reused (FORMAT.md, "Inode reuse"), and ext4
  // (auto_da_alloc) starts writeback of the new file's data on a rename over
  // an existing file, which made an overwrite about three times as slow. A
  // lock-free reader in between sees a miss, never a partial value; add,
  // replace, incr and touch hold this shard's lock and never see the gap.
  if (lstat(path.c_str(), &old) == 0 && Retire(shard, path, uint64_t(old.st_size), true)) {
    slot.entries.fetch_sub(1, std::memory_order_relaxed);
    slot.bytes.fetch_sub(int64_t(old.st_size), std::memory_order_relaxed);
  }
  int rc = rename(tmp.path.c_str(), path.c_str());
  int err = errno;
  if (tmp.mine) mine_[shard].store(kMineFree, std::memory_order_release);
  if (rc != 0) {
    unlink(tmp.path.c_str());
    return ErrnoStatus(region(), "cannot rename " + tmp.path + " to " + path, err);
  }
  count_new();
  return Status::OK();
}

bool FileStore::ClaimSpare(int shard, const NewEntry& e, const std::string& path, Status* s) {
  auto& slot = ledger_->slot(shard);
  for (uint32_t bits; (bits = slot.spares.load(std::memory_order_acquire) &
                              ((1u << file::kSpareSlots) - 1)) != 0;) {
    int i = __builtin_ctz(bits);
    uint32_t m = 1u << i;
    if (!(slot.spares.fetch_and(~m, std::memory_order_acq_rel) & m)) continue;  // taken
    // Renamed at once (the slot's bit is clear now, and a retire may fill
    // the slot again), then opened without following any link.
    std::string spare = ShardPath(shard) + "/" + file::SpareName(i);
    if (rename(spare.c_str(), path.c_str()) != 0)
      continue;  // the bit was stale (a crash, a scan): try another
    int fd = file::OpenNoFollow(path, O_WRONLY | O_NONBLOCK);
    if (fd < 0 && errno == ELOOP) {
      // The shard directory became a link: put back what was moved there,
      // touch nothing else.
      rename(path.c_str(), spare.c_str());
      return false;
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
      if (fd >= 0) close(fd);
      unlink(path.c_str());  // not a plain file of ours: not reused
      return false;
    }
    slot.spare_bytes.fetch_sub(int64_t(st.st_size), std::memory_order_relaxed);
    *s = file::FillAndClose(fd, e, uint64_t(st.st_size), cfg_.fsync, region(), path);
    if (!s->ok()) unlink(path.c_str());
    return true;
  }
  return false;
}

Status FileStore::WriteEntryFile(int shard, const NewEntry& e, Temp* tmp) {
  CheckFork();
  auto& m = mine_[shard];
  uint64_t st = m.load(std::memory_order_acquire);
  if (exchange_ok_.load(std::memory_order_relaxed) && st != kMineBusy &&
      m.compare_exchange_strong(st, kMineBusy, std::memory_order_acq_rel)) {
    // This thread owns the shard's own spare name until Commit or Abandon.
    tmp->path = MineName(shard);
    tmp->mine = true;
    // Fills the own name's file (open at fd, `had` bytes long). Failed
    // half-way (a full disk), the file is ours and partial: removed.
    auto fill = [&](int fd, uint64_t had) {
      Status f = file::FillAndClose(fd, e, had, cfg_.fsync, region(), tmp->path);
      if (!f.ok()) {
        unlink(tmp->path.c_str());
        m.store(kMineFree, std::memory_order_release);
      }
      return f;
    };
    Status s;
    if (st >= kMineHas) {
      // The steady state of an overwrite: rewrite the file the last
      // exchange left here, no rename, no create.
      int fd = file::OpenNoFollow(tmp->path, O_WRONLY | O_NONBLOCK);
      if (fd >= 0) return fill(fd, st - kMineHas);
      // Gone (a sweep took it for a stale file, the directory was removed),
      // or the shard is a link now (refused below, when the file is made).
    }
    if (ClaimSpare(shard, e, tmp->path, &s)) {
      if (!s.ok()) m.store(kMineFree, std::memory_order_release);
      return s;
    }
    if (!(s = PrepareShard(shard)).ok()) {
      m.store(kMineFree, std::memory_order_release);
      return s;
    }
    for (int attempt = 0; attempt < 3; ++attempt) {
      int fd = file::OpenNoFollow(tmp->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
      if (fd >= 0) return fill(fd, 0);
      int err = errno;
      if (err == ENOENT) {  // the shard directory is made on first use
        if (mkdir(ShardPath(shard).c_str(), 0700) != 0 && errno != EEXIST) break;
      } else if (err == EEXIST) {
        unlink(tmp->path.c_str());  // our own name: a leftover of ours
      } else {
        break;
      }
    }
    // Could not use the own name: a fresh temporary file instead.
    m.store(kMineFree, std::memory_order_release);
  }
  tmp->mine = false;
  Status s;
  tmp->path = ShardPath(shard) + "/" + file::TempName();
  if (ClaimSpare(shard, e, tmp->path, &s)) return s;
  if (!(s = PrepareShard(shard)).ok()) return s;
  return file::WriteTemp(ShardPath(shard), e, cfg_.fsync, region(), &tmp->path);
}

void FileStore::Abandon(int shard, const Temp& tmp, uint64_t size) {
  if (tmp.mine) {
    mine_[shard].store(size + kMineHas, std::memory_order_release);
    return;
  }
  unlink(tmp.path.c_str());
}

}  // namespace regioncache::file
