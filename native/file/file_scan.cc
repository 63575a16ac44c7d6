// FileStore (file_store.h): shard scans -- recounts, eviction to the
// bounds, culls, clear and the expiry purge.

#include "file/file_store.h"

#include <signal.h>
#include <random>

namespace regioncache::file {

namespace {
// A shard slot that counts nothing: its directory is missing, or refused.
// (writes, the count toward the next periodic scan, is the caller's.)
void ZeroCounts(ShardSlot& slot) {
  slot.entries.store(0, std::memory_order_relaxed);
  slot.bytes.store(0, std::memory_order_relaxed);
  slot.spares.store(0, std::memory_order_relaxed);
  slot.spare_bytes.store(0, std::memory_order_relaxed);
  slot.temp_bytes.store(0, std::memory_order_relaxed);
  slot.oldest_ms.store(0, std::memory_order_relaxed);
}
}  // namespace

void FileStore::RecountShard(int shard) {
  ScanPolicy pol;
  pol.expired = false;
  ScanResult res;
  Status st = ScanShard(shard, pol, &res);
  if (st.ok()) return;
  Log(LogLevel::kError, region(), kind(), st.message());
  // Not countable (a refused shard directory): nothing is counted there.
  ZeroCounts(ledger_->slot(shard));
}

// --------------------------------------------------------------- eviction --

int FileStore::PickVictimShard() {
  // Sampled LRU (by store time): of kVictimSamples random shards, the one
  // whose oldest entry is oldest. Keys hash evenly, so the shards' oldest
  // entries are a fair sample of the region's. Empty shards are skipped.
  constexpr int kVictimSamples = 8;
  thread_local std::mt19937 rng(std::random_device{}());
  int pick = -1;
  int64_t best = 0;
  for (int i = 0; i < kVictimSamples; ++i) {
    int s = int(rng() % kShards);
    const auto& slot = ledger_->slot(s);
    if (slot.bytes.load(std::memory_order_relaxed) <= 0) continue;
    int64_t oldest = slot.oldest_ms.load(std::memory_order_relaxed);
    if (pick < 0 || oldest < best) pick = s, best = oldest;
  }
  if (pick >= 0) return pick;
  pick = int(rng() % kShards);
  for (int i = 0; i < kShards; ++i) {
    int s = (pick + i) % kShards;
    if (ledger_->slot(s).bytes.load(std::memory_order_relaxed) > 0) return s;
  }
  return -1;
}

Status FileStore::MakeRoom(uint64_t bytes, const std::string& protect) {
  // Each pass is one shard scan; a shard that cannot help is recounted by
  // its scan, so the counts that sent us here get corrected as we go.
  // Before a write (bytes > 0) the entry bound is Django's: cull once the
  // count has reached MAX_ENTRIES. After it, only a count above the bound
  // (left by concurrent writers) culls.
  uint64_t entry_limit = bytes > 0 ? cfg_.max_entries : cfg_.max_entries + 1;
  for (int pass = 0; pass < 2 * kShards; ++pass) {
    // The common case, a region within its bounds, costs one pass over the
    // slots' byte counts; only over a bound are the counts judged slot by
    // slot before anything is evicted on their word.
    if (cfg_.max_entries == 0) {
      uint64_t quick = ledger_->BytesForBound();
      if (quick + bytes <= cfg_.max_size && quick + bytes >= quick) return Status::OK();
    }
    file::LedgerTotals t = ledger_->Totals();
    if (t.implausible >= 0) {
      // Counts no store wrote (the ledger was damaged): counted again from
      // the directory before anything is evicted on their word.
      Log(LogLevel::kWarning, region(), kind(),
          "the ledger " + ledger_->path() + " held impossible counts for shard " +
              file::ShardDirName(t.implausible) + "; counted it again");
      RecountShard(t.implausible);
      continue;
    }
    if (cfg_.max_entries != 0 && t.entries >= entry_limit) {
      Status s = Cull();
      if (!s.ok()) return s;
      continue;
    }
    // Dead writers' temporary files take disk space too (until swept).
    uint64_t used = t.bytes + t.temp_bytes;
    if (used + bytes <= cfg_.max_size) return Status::OK();
    int shard = PickVictimShard();
    if (shard < 0) return Status::OK();  // nothing counted anywhere: nothing to evict
    ScanPolicy pol;
    pol.quota = -1;
    pol.need_bytes = used + bytes - cfg_.max_size;
    pol.protect = protect;
    ScanResult res;
    Status s = ScanShard(shard, pol, &res);
    if (!s.ok()) {
      // A refused shard (logged): counted as empty, so it is not picked again.
      RecountShard(shard);
      continue;
    }
    ledger_->counters().evict_scans.fetch_add(1, std::memory_order_relaxed);
  }
  return Status::OK();  // best effort: other writers keep filling it
}

Status FileStore::Cull() {
  // Django's meaning: at MAX_ENTRIES, remove 1/CULL_FREQUENCY of the entries
  // (all of them for 0). Expired ones go first, then the oldest of each
  // shard, each shard giving its share of the total.
  if (cfg_.cull_frequency == 0) {
    uint64_t n = ledger_->TotalEntries();
    Status s = Clear();
    if (s.ok()) ledger_->counters().evictions.fetch_add(n, std::memory_order_relaxed);
    return s;
  }
  uint64_t total = ledger_->TotalEntries();
  uint64_t target = std::max<uint64_t>(1, total / cfg_.cull_frequency);
  double share = total ? double(target) / double(total) : 1.0;
  double acc = 0;
  uint64_t taken = 0;
  for (int s = 0; s < kShards; ++s) {
    int64_t n = ledger_->slot(s).entries.load(std::memory_order_relaxed);
    if (n <= 0) continue;
    acc += double(n) * share;
    ScanPolicy pol;
    pol.quota = int64_t(acc + 0.5) - int64_t(taken);
    if (pol.quota <= 0) continue;
    ScanResult res;
    Status st = ScanShard(s, pol, &res);
    if (!st.ok()) {
      RecountShard(s);  // refused (logged): counted as empty
      continue;
    }
    taken += res.evicted + res.expired;
  }
  return Status::OK();
}

Status FileStore::ScanShard(int shard, const ScanPolicy& pol, ScanResult* res) {
  ShardLock lock(ledger_.get(), shard);
  if (!lock.status().ok()) return lock.status();
  return ScanShardLocked(shard, pol, res);
}

Status FileStore::ScanShardLocked(int shard, const ScanPolicy& pol, ScanResult* res) {
  struct Cand {
    std::string name;
    uint64_t size;
    int64_t stored_ms;
  };
  std::string dirpath = ShardPath(shard);
  auto& slot = ledger_->slot(shard);
  // Names first, then work: files renamed or removed while readdir walks
  // the directory may or may not be returned again. Everything below
  // renames and removes relative to the shard directory as opened here
  // (never through a link), so nothing outside it is touched even if its
  // name is swapped for a link meanwhile.
  std::vector<std::string> entries, temps;
  DIR* d = nullptr;
  struct DirCloser {
    DIR** d;
    ~DirCloser() {
      if (*d) closedir(*d);
    }
  } closer{&d};
  {
    // Never through a link, and only a directory of ours: everything
    // below removes and renames files in it.
    bool missing = false;
    Status ds = OpenShardDir(shard, &d, &missing);
    if (!ds.ok()) return ds;  // the caller logs or returns it, once per pass
    if (missing) {
      ZeroCounts(slot);
      slot.writes.store(0, std::memory_order_relaxed);
      return Status::OK();
    }
    while (dirent* de = readdir(d)) {
      std::string_view nm(de->d_name);
      if (file::IsTempName(nm)) temps.emplace_back(nm);
      else if (file::ShardOfName(nm) == shard) entries.emplace_back(nm);  // others: not ours
    }
  }
  const int sfd = dirfd(d);
  int64_t now = NowMs();
  auto& c = ledger_->counters();
  int64_t dead_temp_bytes = 0;
  // Temporary files of dead writers. The lock is held, and writers check
  // that their temporary file still exists under it before the rename.
  for (const auto& t : temps) {
    struct stat st;
    if (fstatat(sfd, t.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    int64_t age = now - (int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000);
    int owner = file::TempOwner(t);
    bool owner_gone = owner <= 0 || (kill(owner, 0) != 0 && errno == ESRCH);
    if ((age > kStaleTempMs && owner_gone) || age > kOrphanTempMs) {
      unlinkat(sfd, t.c_str(), 0);
    } else if (owner_gone && S_ISREG(st.st_mode)) {
      // A killed writer's file, kept a while in case its writer lives in
      // another pid namespace: it takes disk space, so it counts against
      // MAX_SIZE until it is swept.
      dead_temp_bytes += int64_t(st.st_size);
    }
  }
  std::vector<Cand> keep;
  uint64_t keep_bytes = 0;
  uint64_t freed = 0;  // bytes removed: expired and damaged files count too
  for (auto& name : entries) {
    std::string path = dirpath + "/" + name;
    if (pol.all) {
      // Cleared entries become spares (up to the slots and the budget), so
      // the writes that refill the region reuse them instead of paying for
      // creates right after a burst of unlinks (FORMAT.md, "Inode reuse").
      struct stat st;
      if (fstatat(sfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          Retire(shard, sfd, name, uint64_t(st.st_size), S_ISREG(st.st_mode)))
        ++res->removed_all;
      continue;
    }
    OpenEntry o;
    Head head;
    std::string why;
    Status s = file::ReadHead(region(), path, false, kHeaderSize, &o, &head, &why);
    if (!s.ok()) return s;
    if (head == Head::kAbsent) continue;
    if (head == Head::kBad) {
      // Under the lock an entry file cannot change: this is real damage.
      struct stat st;
      LogBadOnce(path, o.fd >= 0 && fstat(o.fd, &st) == 0 ? st.st_ino : 0, why);
      if (unlinkat(sfd, name.c_str(), 0) == 0) {
        ++res->bad;
        freed += o.size;
        c.corrupt_removed.fetch_add(1, std::memory_order_relaxed);
      }
      continue;
    }
    if (pol.expired && IsExpired(o.h.expires_ms, now)) {
      if (Retire(shard, sfd, name, o.size, true)) {
        ++res->expired;
        freed += o.size;
        c.expirations.fetch_add(1, std::memory_order_relaxed);
      }
      continue;
    }
    keep.push_back({std::move(name), o.size, o.h.stored_ms});
    keep_bytes += o.size;
  }
  c.files_scanned.fetch_add(entries.size(), std::memory_order_relaxed);
  int64_t quota = pol.quota < 0 ? std::max<int64_t>(1, int64_t(keep.size()) / kEvictFraction)
                                : pol.quota;
  // Expired entries already went and count toward the quota.
  quota -= int64_t(res->expired);
  if ((quota > 0 || pol.need_bytes > 0) && !keep.empty()) {
    std::sort(keep.begin(), keep.end(),
              [](const Cand& a, const Cand& b) { return a.stored_ms < b.stored_ms; });
    // Oldest first; the survivors are compacted to the front of keep.
    size_t out = 0;
    for (size_t i = 0; i < keep.size(); ++i) {
      bool want = int64_t(res->evicted) < quota || freed < pol.need_bytes;
      if (want && keep[i].name != pol.protect &&
          Retire(shard, sfd, keep[i].name, keep[i].size, true)) {
        ++res->evicted;
        freed += keep[i].size;
        keep_bytes -= keep[i].size;
        continue;
      }
      if (out != i) keep[out] = std::move(keep[i]);
      ++out;
    }
    keep.resize(out);
    c.evictions.fetch_add(res->evicted, std::memory_order_relaxed);
  }
  if (pol.all) {
    keep.clear();
    keep_bytes = 0;
  }
  // The spare slots as they are now (a clear keeps them: see above).
  uint32_t spares = 0;
  int64_t spare_bytes = 0;
  for (int i = 0; i < file::kSpareSlots; ++i) {
    std::string spare = file::SpareName(i);
    struct stat st;
    if (fstatat(sfd, spare.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
      unlinkat(sfd, spare.c_str(), 0);  // a link, or not a file to reuse: the name only
      continue;
    }
    spares |= 1u << i;
    spare_bytes += int64_t(st.st_size);
  }
  // We hold the lock and have just seen every file: the counts are exact.
  int64_t oldest = NowMs();
  for (const auto& k : keep) oldest = std::min(oldest, k.stored_ms);
  slot.oldest_ms.store(oldest, std::memory_order_relaxed);
  slot.entries.store(int64_t(keep.size()), std::memory_order_relaxed);
  slot.bytes.store(int64_t(keep_bytes), std::memory_order_relaxed);
  slot.writes.store(0, std::memory_order_relaxed);
  slot.spare_bytes.store(spare_bytes, std::memory_order_relaxed);
  slot.temp_bytes.store(dead_temp_bytes, std::memory_order_relaxed);
  slot.spares.store(spares, std::memory_order_release);
  return Status::OK();
}

void FileStore::NoteWrite(int shard) {
  auto& slot = ledger_->slot(shard);
  uint64_t w = slot.writes.fetch_add(1, std::memory_order_relaxed) + 1;
  int64_t n = slot.entries.load(std::memory_order_relaxed);
  uint64_t every = std::max<uint64_t>(kRecountMin, n > 0 ? uint64_t(n) : 0);
  // One writer wins the exchange and does the scan; it costs about one
  // header read per write since the last one.
  if (w >= every && slot.writes.compare_exchange_strong(w, 0, std::memory_order_relaxed)) {
    ScanPolicy pol;  // expired and damaged files only
    ScanResult res;
    if (Status st = ScanShard(shard, pol, &res); !st.ok())
      Log(LogLevel::kError, region(), kind(), st.message());
  }
}

namespace {
// A pass over every shard answers with its first failure and how many more
// shards failed: one status (and one log line) for the pass, not 256.
class PassFailures {
 public:
  void Add(const Status& s) {
    if (s.ok()) return;
    if (first_.ok()) first_ = s;
    else ++more_;
  }
  Status Result() const {
    if (first_.ok() || more_ == 0) return first_;
    return first_.WithMessage(first_.message() + " (and " + std::to_string(more_) +
                              " more shard" + (more_ == 1 ? "" : "s") + ")");
  }

 private:
  Status first_;
  int more_ = 0;
};
}  // namespace

Status FileStore::ScanAll(const ScanPolicy& pol, uint64_t* expired) {
  PassFailures failed;
  for (int s = 0; s < kShards; ++s) {
    ScanResult res;
    failed.Add(ScanShard(s, pol, &res));
    if (expired) *expired += res.expired;
  }
  return failed.Result();
}

Status FileStore::RecountAll() {
  // Every shard is counted; one that cannot be (refused) counts as empty,
  // and the first such error is returned.
  ScanPolicy pol;
  pol.expired = false;
  return ScanAll(pol);
}

Status FileStore::Clear() {
  if (Status h = Health(false); !h.ok()) return h;
  // A shard that is refused (a link, not ours) is left alone; the others
  // are cleared, and the first refusal is returned.
  ScanPolicy pol;
  pol.all = true;
  return ScanAll(pol);
}

Status FileStore::PurgeExpired(uint64_t* removed) {
  *removed = 0;
  if (Status h = Health(false); !h.ok()) return h;
  if (Status st = ScanAll(ScanPolicy(), removed); !st.ok()) return st;
  // Every shard was just recounted: if the truth is above the bounds (counts
  // left short by writers killed mid-write), evict down to them now.
  return MakeRoom(0, std::string());
}

}  // namespace regioncache::file
