// FileStore (file_store.h): the cache contract -- reads, writes, touch,
// delete, incr, compare-and-swap -- and how an entry found damaged or
// expired is dropped.

#include "file/file_store.h"

#include "core/compress.h"
#include "regioncache/codec.h"

namespace regioncache::file {

void FileStore::LogBadOnce(const std::string& path, ino_t ino, const std::string& why) {
  {
    std::lock_guard<std::mutex> g(log_mu_);
    if (logged_.size() > 4096) logged_.clear();  // bounded; a repeat line is harmless
    if (!logged_.emplace(path, ino).second) return;
  }
  Log(LogLevel::kWarning, region(), kind(),
      "damaged entry file " + path + ": " + why + " (treated as a miss, removed)");
}

bool FileStore::DropLocked(int shard, const std::string& name, const OpenEntry& o, bool reuse) {
  std::string path = PathOf(shard, name);
  // Renames into the shard happen under its lock, which we hold: if the
  // file is still the one we judged (an inode can come back under its old
  // name after a reuse, hence the content check), removing it cannot hit a
  // newer entry.
  if (!file::IsFileAt(o, path)) return false;
  if (!Retire(shard, path, o.size, reuse)) return false;
  auto& slot = ledger_->slot(shard);
  slot.entries.fetch_sub(1, std::memory_order_relaxed);
  slot.bytes.fetch_sub(int64_t(o.size), std::memory_order_relaxed);
  return true;
}

void FileStore::DropBad(int shard, const std::string& name, const OpenEntry& o, bool locked,
                        const std::string& why) {
  struct stat st;
  LogBadOnce(PathOf(shard, name), o.fd >= 0 && fstat(o.fd, &st) == 0 ? st.st_ino : 0, why);
  // A damaged file may not have the size the ledger counted (it was cut or
  // rewritten behind our back), so the shard is recounted from its
  // directory as well; damage is rare enough for that to cost nothing.
  ScanPolicy recount;
  recount.expired = false;
  ScanResult res;
  bool removed;
  if (locked) {
    removed = DropLocked(shard, name, o, false);
    ScanShardLocked(shard, recount, &res);
  } else {
    ShardLock lock(ledger_.get(), shard);
    removed = lock.status().ok() && DropLocked(shard, name, o, false);
    if (lock.status().ok()) ScanShardLocked(shard, recount, &res);
  }
  if (removed) ledger_->counters().corrupt_removed.fetch_add(1, std::memory_order_relaxed);
}

void FileStore::DropExpired(int shard, const std::string& name, const OpenEntry& o, bool locked) {
  bool removed;
  if (locked) {
    removed = DropLocked(shard, name, o, true);
  } else {
    ShardLock lock(ledger_.get(), shard);
    removed = lock.status().ok() && DropLocked(shard, name, o, true);
  }
  if (removed) ledger_->counters().expirations.fetch_add(1, std::memory_order_relaxed);
}

Status FileStore::ProbeEntry(int shard, const std::string& name, std::string_view key, bool locked,
                             bool writable, size_t want, OpenEntry* o, Probe* p, bool judge,
                             std::span<char> first) {
  *p = Probe::kAbsent;
  Head head;
  std::string why;
  Status s = file::ReadHead(region(), PathOf(shard, name), writable, want, o, &head, &why, first,
                            key.size());
  if (!s.ok()) return s;
  if (head == Head::kAbsent) return Status::OK();
  if (head == Head::kBad || o->key() != key) {
    if (!judge) {
      *p = Probe::kSuspect;
      return Status::OK();
    }
    if (head == Head::kOk) why = "holds another key (a hash collision or a foreign file)";
    if (o->fd >= 0) DropBad(shard, name, *o, locked, why);
    else LogBadOnce(PathOf(shard, name), 0, why);
    return Status::OK();
  }
  if (IsExpired(o->h.expires_ms, NowMs())) {
    DropExpired(shard, name, *o, locked);
    return Status::OK();
  }
  *p = Probe::kLive;
  return Status::OK();
}

// ---------------------------------------------------------------- reading --

Status FileStore::Read(std::string_view key, Value* out, bool peek) {
  if (Status h = Health(false); !h.ok()) return h;
  std::string name = file::EntryName(key);
  int shard = file::ShardOfEntryName(name);
  auto& c = ledger_->counters();
  out->at = nullptr;
  std::span<char> first = out->target ? out->target->First() : std::span<char>{};
  for (int attempt = 1; attempt <= kReadAttempts; ++attempt) {
    // Only the last attempt may judge a file damaged: an earlier failure may
    // be a reused file being rewritten under a reader that opened it before.
    bool judge = attempt == kReadAttempts;
    OpenEntry o;
    Probe p;
    Status s = ProbeEntry(shard, name, key, false, false, kFirstRead, &o, &p, judge, first);
    if (!s.ok()) return s;
    if (p == Probe::kSuspect) continue;
    if (p == Probe::kLive) {
      Status r = file::ReadValue(&o, out);
      if (r.ok()) {
        if (!peek) c.hits.fetch_add(1, std::memory_order_relaxed);
        return Status::OK();
      }
      out->data.clear();
      out->at = nullptr;
      if (!judge) continue;
      DropBad(shard, name, o, false, r.message());
    }
    break;
  }
  if (!peek) c.misses.fetch_add(1, std::memory_order_relaxed);
  return Status::NotFound();
}

Status FileStore::CheckItem(std::string_view key, std::string_view data, uint32_t flags) const {
  if (key.size() > cfg_.max_item || data.size() > cfg_.max_item - key.size())
    return TooLargeError(key, data.size(), cfg_.max_item);
  if (flags & kFlagZstd)
    return Status::InvalidArgument(RegionMessage(
        region(),
        "flags include kFlagZstd, which the file store reserves for its own compression"));
  return Status::OK();
}

Status FileStore::Write(WriteMode mode, std::string_view key, std::string_view data,
                        uint32_t flags, int64_t exp) {
  if (Status c = CheckItem(key, data, flags); !c.ok()) return c;
  if (Status h = Health(false, nullptr, true); !h.ok()) return h;
  std::string name = file::EntryName(key);
  int shard = file::ShardOfEntryName(name);
  NewEntry e;
  file::BuildEntry(key, data, flags, exp, NowMs(), cfg_.compress_min, cfg_.compress_level, &e);
  Status s;
  if (mode != WriteMode::kSet) {
    // A first look without the lock: an add of a key that is there (Django's
    // add as a lock) or a replace of one that is not is answered without
    // writing anything. The answer is what the store held at this moment,
    // so it is as correct as the one under the lock; a write still checks
    // again under the lock below.
    bool live = false;
    if (!(s = LiveUnlocked(shard, name, key, &live)).ok()) return s;
    if (live == (mode == WriteMode::kAdd)) return Status::NotStored();
  }
  if (!(s = MakeRoom(e.FileSize(), name)).ok()) return s;
  for (int attempt = 0;; ++attempt) {
    // The file is written before the lock is taken: the lock covers only
    // the check and the rename, however large the value.
    Temp tmp;
    if (!(s = WriteEntryFile(shard, e, &tmp)).ok()) {
      // The directory removed under us (or the ledger with it): made again,
      // and the write tried once more.
      bool repaired = false;
      if (attempt == 0 && Health(true, &repaired, true).ok() && repaired) continue;
      return s;
    }
    ShardLock lock(ledger_.get(), shard);
    if (!lock.status().ok()) {
      Abandon(shard, tmp, e.FileSize());
      return lock.status();
    }
    if (mode != WriteMode::kSet) {
      OpenEntry o;
      Probe p;
      s = ProbeEntry(shard, name, key, true, false, kFirstRead, &o, &p);
      if (!s.ok()) {
        Abandon(shard, tmp, e.FileSize());
        return s;
      }
      bool live = p == Probe::kLive;
      if (live) {
        // A live header over a damaged body is no entry: check the body.
        if (Status b = file::VerifyBody(&o); !b.ok()) {
          DropBad(shard, name, o, true, b.message());
          live = false;
        }
      }
      if (live == (mode == WriteMode::kAdd)) {
        Abandon(shard, tmp, e.FileSize());
        return Status::NotStored();
      }
    }
    // Temporary files are swept only under this lock, and the commit sees
    // whether ours is still there: a file whose mtime was old (a reused
    // spare between its claim and its write) may have been taken for a dead
    // writer's; then it is written again.
    bool vanished = false;
    s = CommitLocked(shard, name, tmp, e.FileSize(), &vanished);
    if (!s.ok()) return s;
    if (vanished) {
      if (attempt == 0) continue;
      return Status::IOError(
          RegionMessage(region(), "temporary file " + tmp.path + " vanished before its rename"));
    }
    break;
  }
  if (cfg_.fsync) {
    if (Status st = file::SyncDir(ShardPath(shard), region()); !st.ok()) return st;
  }
  ledger_->counters().sets.fetch_add(1, std::memory_order_relaxed);
  NoteWrite(shard);
  // The room made before the write may have been taken by other writers
  // meanwhile, or the counts may have been short (a writer killed between
  // its rename and its count): the bound is checked again now.
  return MakeRoom(0, name);
}

Status FileStore::LiveUnlocked(int shard, const std::string& name, std::string_view key,
                               bool* live) {
  *live = false;
  for (int attempt = 1; attempt <= kReadAttempts; ++attempt) {
    bool judge = attempt == kReadAttempts;
    OpenEntry o;
    Probe p;
    Status s = ProbeEntry(shard, name, key, false, false, kFirstRead, &o, &p, judge);
    if (!s.ok()) return s;
    if (p == Probe::kSuspect) continue;
    if (p != Probe::kLive) return Status::OK();
    // A live header over a damaged body is no entry: check the body.
    Status b = file::VerifyBody(&o);
    if (b.ok()) {
      *live = true;
      return Status::OK();
    }
    if (judge) DropBad(shard, name, o, false, b.message());
  }
  return Status::OK();
}

template <typename Fn>
Status FileStore::WithLiveLocked(std::string_view key, bool writable, size_t want, Fn&& fn) {
  if (Status h = Health(false); !h.ok()) return h;
  std::string name = file::EntryName(key);
  int shard = file::ShardOfEntryName(name);
  // Under the lock the file found is the current one: a rename cannot slip
  // in between the caller's check and its write.
  ShardLock lock(ledger_.get(), shard);
  if (!lock.status().ok()) return lock.status();
  OpenEntry o;
  Probe p;
  Status s = ProbeEntry(shard, name, key, true, writable, want, &o, &p);
  if (!s.ok()) return s;
  if (p != Probe::kLive) return Status::NotFound();
  return fn(shard, name, o);
}

Status FileStore::Touch(std::string_view key, int64_t expires_ms) {
  return WithLiveLocked(key, true, kHeadRead, [&](int shard, const std::string& name,
                                                  OpenEntry& o) {
    return file::RewriteExpiry(&o, expires_ms, cfg_.fsync, region(), PathOf(shard, name));
  });
}

Status FileStore::Delete(std::string_view key) {
  return WithLiveLocked(key, false, kHeadRead, [&](int shard, const std::string& name,
                                                   OpenEntry& o) {
    return DropLocked(shard, name, o, true) ? Status::OK() : Status::NotFound();
  });
}

Status FileStore::Incr(std::string_view key, int64_t delta, int64_t* result) {
  // The whole read-modify-write holds the shard lock, and every rename into
  // the shard takes it too: no write can land between our read and ours.
  return WithLiveLocked(key, false, kFirstRead, [&](int shard, const std::string& name,
                                                    OpenEntry& o) {
    if (Encoding(o.h.flags) != kEncInt) return Status::NotANumber();
    Value v;
    if (Status r = file::ReadValue(&o, &v); !r.ok()) {
      DropBad(shard, name, o, true, r.message());
      return Status::NotFound();
    }
    DecimalSum sum;
    if (Status s = AddToDecimal(v.data, delta, &sum); !s.ok()) return s;
    NewEntry e;
    file::BuildEntry(key, sum.view(), v.flags, o.h.expires_ms, NowMs(), 0, 0, &e);
    if (Status s = ReplaceLocked(shard, name, e); !s.ok()) return s;
    // The shard lock is held: the bounds are enforced by the next write.
    *result = sum.value;
    return Status::OK();
  });
}

Status FileStore::ReplaceLocked(int shard, const std::string& name, const NewEntry& e) {
  Temp tmp;
  Status s = WriteEntryFile(shard, e, &tmp);
  if (!s.ok()) return s;
  bool vanished = false;  // cannot be: temporary files are swept under the lock we hold
  s = CommitLocked(shard, name, tmp, e.FileSize(), &vanished);
  if (!s.ok()) return s;
  if (vanished)
    return Status::IOError(
        RegionMessage(region(), "temporary file " + tmp.path + " vanished before its rename"));
  return Status::OK();
}

Status FileStore::CompareAndSwap(std::string_view key, std::string_view expected,
                                 uint32_t expected_flags, const WriteItem* with) {
  // The replacement is checked and compressed before the lock is taken; the
  // lock then covers the read, the comparison and the write of the new file
  // (the values compared are a lock's tokens in the common use: one pread,
  // one pwrite into this process's own spare).
  NewEntry e;
  if (with) {
    if (Status c = CheckItem(key, with->data, with->flags); !c.ok()) return c;
    file::BuildEntry(key, with->data, with->flags, with->expires_ms, NowMs(), cfg_.compress_min,
                     cfg_.compress_level, &e);
  }
  int shard = -1;
  std::string name;
  Status s = WithLiveLocked(key, false, kFirstRead, [&](int sh, const std::string& nm,
                                                         OpenEntry& o) {
    Value v;
    if (Status r = file::ReadValue(&o, &v); !r.ok()) {
      // A live header over a damaged body is no entry.
      DropBad(sh, nm, o, true, r.message());
      return Status::NotFound();
    }
    if (v.flags != expected_flags || v.bytes() != expected) return Status::NotStored();
    if (!with) return DropLocked(sh, nm, o, true) ? Status::OK() : Status::NotFound();
    shard = sh;
    name = nm;
    return ReplaceLocked(sh, nm, e);
  });
  if (!s.ok() || !with) return s;
  // As a write ends: synced, counted, and the bounds checked again (no room
  // was made before: the entry replaced an entry, and only its size moved).
  if (cfg_.fsync) {
    if (Status st = file::SyncDir(ShardPath(shard), region()); !st.ok()) return st;
  }
  ledger_->counters().sets.fetch_add(1, std::memory_order_relaxed);
  NoteWrite(shard);
  return MakeRoom(0, name);
}

}  // namespace regioncache::file
