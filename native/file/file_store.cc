// The file store. Design in brief (the format is in FORMAT.md):
//  - one file per entry, named by the XXH3-128 of its key, in one of 256
//    shard directories; a write goes to a temporary file in the same shard
//    and is renamed over the entry, so readers see a whole old or a whole new
//    file and a writer killed half-way leaves only a temporary file;
//  - readers take no lock; every rename into and unlink from a shard happens
//    under that shard's lock (file_ledger.h), which makes add/replace/incr
//    atomic across processes and keeps the ledger's per-shard counts exact;
//  - bounds are checked against the ledger's counts, and eviction scans one
//    sampled shard at a time, taking its expired entries and then its oldest
//    eighth: about eight headers read per entry evicted, however large the
//    region;
//  - a damaged, truncated or foreign file is a miss: it is logged once and
//    removed, if it is still the same file, never reported to the caller;
//  - entry files that leave their name (overwritten, deleted, evicted) are
//    kept as a few spare files per shard and rewritten by later writes
//    rather than unlinked and created anew ("Inode reuse" below).
//
// Inode reuse. ext4 does not hand out an inode freed in the last seconds:
// find_inode_bit() steps over every recently deleted one, reading its dtime
// (recently_deleted()), so a store that deletes a file for each file it
// creates makes each create slower the faster it writes -- about 1 ms per
// create here at a few thousand sets a second. So an entry file that leaves
// its name goes to a spare slot (".spare.<i>", kSpareSlots per shard) when it
// is small (<= kSpareMax) and the spares stay within SpareBudget(MAX_SIZE);
// a writer claims a spare by renaming it to its temporary name and
// overwrites it. Invariants:
//  - files are retired into spare slots only under the shard lock, only
//    into a slot whose bit is clear, and the bit is set after the rename;
//    a claimer clears the bit (fetch_and) before its rename, so one writer
//    owns each spare. The bits are advisory: a claim that finds no file
//    falls back to creating one, and every shard scan makes them exact;
//  - a file is rewritten only after it left its entry name, so a lock-free
//    reader that opened it before may see it change under it: such a read
//    fails its checks and is retried from the open; a file is judged
//    damaged only when reads from three opens all fail (Read);
//  - spares are not entries: not in entries or bytes_used (stats show
//    spare_bytes); shared spares hold at most max(MAX_SIZE/16, 4 MB)
//    (SpareBudget; a small region needs a floor, or its evictions unlink).
//
// Own spares. A set of a key that is there puts its new file in place with
// one renameat2(RENAME_EXCHANGE) under the shard lock: the entry name never
// goes missing, and the old file lands on the writer's temporary name. Each
// process keeps that file (if <= kSpareMax) as its own spare for the shard,
// under a name of its own (".tmp.<pid>.<16 hex><shard>", so sweeps know its
// owner), and its next write into the shard rewrites it in place: an
// overwrite is open, write, close, lock, exchange, lstat, unlock -- one
// rename instead of three, no create. Invariants:
//  - mine_[shard] says who may touch the own name: free, busy (one thread
//    owns it from WriteEntryFile until its commit or abandon), or idle with
//    the file's size; only the thread that made it busy changes it again;
//  - the files are temporary files of a live writer: sweeps leave them
//    alone unless a day old (an exchanged-out file keeps the old entry's
//    mtime; a swept one is noticed at the open or the exchange, and a new
//    file is made); a store that closes removes them, a killed process
//    leaves them to the sweeps (10 minutes), at most 256 files of <= 64 KB;
//  - a forked child forgets its parent's own spares (CheckFork): the parent
//    goes on rewriting them;
//  - without RENAME_EXCHANGE (a file system that lacks it) the old file is
//    moved to a shared spare slot and the new one renamed in its place.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "file/file_entry.h"
#include "file/file_format.h"
#include "file/file_io.h"
#include "file/file_ledger.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/file_store.h"
#include "regioncache/glob.h"
#include "regioncache/log.h"
#include "regioncache/options.h"
#include "core/compress.h"

namespace regioncache {
namespace {

using file::Head;
using file::kHeaderSize;
using file::kShards;
using file::Ledger;
using file::NewEntry;
using file::OpenEntry;
using file::ShardLock;

constexpr uint64_t kDefaultMaxSize = 1ull << 30;
constexpr uint64_t kDefaultMaxItem = 64ull << 20;
constexpr int64_t kStaleTempMs = 10 * 60 * 1000;  // older temporary files are a dead writer's
constexpr size_t kFirstRead = 16 * 1024;           // one pread holds most entries whole
constexpr size_t kHeadRead = kHeaderSize + 256;     // header and a typical key
constexpr uint64_t kRecountMin = 256;               // writes into a shard between recounts
constexpr int64_t kEvictFraction = 8;               // an eviction scan takes 1/8 of a shard
constexpr uint64_t kListScanCap = 10000;            // files examined per List page at most
constexpr char kLedgerName[] = "regioncache.stats";
constexpr uint64_t kSpareMax = 64 * 1024;          // larger files are unlinked, not kept
constexpr int kReadAttempts = 3;                    // opens before a file is judged damaged
constexpr int64_t kOrphanTempMs = 24 * 3600 * 1000; // a live writer's temp older than this is lost
constexpr uint64_t kSpareBudgetMin = 4ull << 20;    // shared spares may hold at least this much
constexpr int64_t kHealthEveryMs = 500;             // ledger and directory checked this often

// Bytes the shared spares of a region may hold: a sixteenth of MAX_SIZE, but
// at least kSpareBudgetMin, so a small region keeps enough spares for its
// evictions to feed its creates (otherwise every eviction unlinks and every
// create of a full small region pays ext4's slow path, "Inode reuse").
uint64_t SpareBudget(uint64_t max_size) { return std::max(max_size / 16, kSpareBudgetMin); }

// A coarse monotonic clock for the health gate: on every operation's path,
// and about 9 ns where CLOCK_REALTIME costs about 50 here.
int64_t CoarseMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct Config {
  uint64_t max_size = kDefaultMaxSize;
  uint64_t max_item = kDefaultMaxItem;
  uint64_t max_entries = 0;
  uint32_t cull_frequency = 3;
  uint64_t compress_min = 0;
  int compress_level = 3;
  bool fsync = false;
};

// What a shard scan should remove besides damaged files and stale
// temporary files (which every scan removes).
struct ScanPolicy {
  bool all = false;            // every entry (Clear)
  bool expired = true;         // expired entries
  int64_t quota = 0;           // then at least this many of the oldest; -1: 1/kEvictFraction
  uint64_t need_bytes = 0;     // and at least this many bytes
  std::string protect;         // an entry name never evicted (the one just written)
};

struct ScanResult {
  uint64_t expired = 0, evicted = 0, bad = 0, removed_all = 0;
};

class FileStore final : public Store {
 public:
  // dir: LOCATION resolved (realpath), which every path inside starts with.
  FileStore(std::string region, std::string location, std::string dir, Config cfg,
            std::unique_ptr<Ledger> ledger)
      : Store(std::move(region), std::move(location)),
        cfg_(cfg),
        spare_budget_(SpareBudget(cfg.max_size)),
        ledger_(std::move(ledger)),
        dir_(std::move(dir)) {
    next_health_.store(CoarseMs() + kHealthEveryMs, std::memory_order_relaxed);
    mine_prefix_ = file::TempName();
    mine_pid_.store(file::CurrentPid(), std::memory_order_release);
    // REGIONCACHE_FILE_NO_EXCHANGE=1 takes the path of a file system without
    // RENAME_EXCHANGE from the start (the tests use it; so can an operator
    // whose file system claims the call but misbehaves).
    const char* no_x = getenv("REGIONCACHE_FILE_NO_EXCHANGE");
    if (no_x && *no_x && std::string_view(no_x) != "0")
      exchange_ok_.store(false, std::memory_order_relaxed);
  }
  ~FileStore() override {
    // Own spares are temporary files: a store that goes away removes them
    // (a killed process leaves them to the sweeps, as any writer's).
    if (file::CurrentPid() != mine_pid_.load(std::memory_order_acquire)) return;
    for (int s = 0; s < kShards; ++s)
      if (mine_[s].load(std::memory_order_acquire) >= kMineHas) unlink(MineName(s).c_str());
  }

  Status Get(std::string_view key, Value* out) override { return Read(key, out, false); }
  Status Peek(std::string_view key, Value* out) override { return Read(key, out, true); }
  Status Set(std::string_view key, std::string_view data, uint32_t flags, int64_t exp) override {
    return Write(key, data, flags, exp, Mode::kSet);
  }
  Status Add(std::string_view key, std::string_view data, uint32_t flags, int64_t exp) override {
    return Write(key, data, flags, exp, Mode::kAdd);
  }
  Status Replace(std::string_view key, std::string_view data, uint32_t flags,
                 int64_t exp) override {
    return Write(key, data, flags, exp, Mode::kReplace);
  }
  Status Touch(std::string_view key, int64_t expires_ms) override;
  Status Delete(std::string_view key) override;
  Status Incr(std::string_view key, int64_t delta, int64_t* result) override;
  Status Clear() override;

  Status List(const ListOptions& opts, ListPage* page) override;
  Status GetStats(Stats* out) override;
  Status PurgeExpired(uint64_t* removed) override;

  std::string_view kind() const override { return "file"; }
  bool MayBlock() const override { return true; }
  size_t FirstReadSize() const override { return kFirstRead; }
  uint64_t MaxItemSize() const override { return cfg_.max_item; }

  // Counts every shard from its directory (a new ledger).
  Status RecountAll();
  // At most every kHealthEveryMs (or now, if `force`): recreates the
  // directory if it was removed (refusing one another user made), maps the
  // ledger again if it was deleted, replaced or cut short, rebuilds it if
  // its header was overwritten, and recounts shards whose counts cannot be
  // true. *repaired: something was. One lstat and one fstat per check.
  // Only a write (`create`) makes a removed directory again, as
  // FileBasedCache's writes do; other operations find no entries there.
  Status Health(bool force, bool* repaired = nullptr, bool create = false);
  // Opens shard s's directory for listing: never a link, ours, private.
  // nullptr with *missing (no such directory yet) or an error.
  Status OpenShardDir(int s, DIR** d, bool* missing);
  // Before a file is created in shard: the shard directory (made if
  // missing, after checking the cache directory) is a directory of ours,
  // not writable by others. One lstat; only on the path that creates.
  Status PrepareShard(int shard);
  // Counts one shard again (its slot zeroed if it cannot be listed).
  void RecountShard(int shard);

 private:
  enum class Mode { kSet, kAdd, kReplace };
  // How the entry a key names was found, with its lock held or not.
  // kSuspect: the file failed a check, but a lock-free reader may have seen
  // it being rewritten; the caller reads again before judging it.
  enum class Probe { kLive, kAbsent, kSuspect };

  std::string ShardPath(int s) const { return dir_ + "/" + file::ShardDirName(s); }
  std::string PathOf(int s, const std::string& name) const {
    std::string p;  // one allocation: this is on every get's path
    p.reserve(dir_.size() + 4 + name.size());
    p.append(dir_).append(1, '/').append(file::ShardDirName(s)).append(1, '/').append(name);
    return p;
  }

  Status Read(std::string_view key, Value* out, bool peek);
  Status Write(std::string_view key, std::string_view data, uint32_t flags, int64_t exp, Mode m);
  // Opens the entry for key and classifies it; bad, foreign and expired files
  // are removed on the way (the shard lock must be held iff `locked`).
  // kLive leaves the file open in *o.
  Status ProbeEntry(int shard, const std::string& name, std::string_view key, bool locked,
                    bool writable, size_t want, OpenEntry* o, Probe* p, bool judge = true,
                    std::span<char> first = {});
  // Removes a file found damaged, expired or evicted, if it is still the
  // same inode; adjusts counts. The lock must be held.
  bool DropLocked(int shard, const std::string& name, const OpenEntry& o, bool reuse);
  // Takes a file away from its entry name (lock held): into a free spare
  // slot if it qualifies, else unlinked. Adjusts the spare counts only.
  bool Retire(int shard, const std::string& path, uint64_t size, bool reuse) {
    return Retire(shard, AT_FDCWD, path, size, reuse);
  }
  // The same for `name` relative to dfd, the shard's directory opened
  // without links (scans), or AT_FDCWD with a full path.
  bool Retire(int shard, int dfd, const std::string& name, uint64_t size, bool reuse);
  // A temporary file written for a commit. `mine`: it is this process's
  // own spare name of the shard (MineName), whose slot in mine_ it holds
  // busy until Commit or Abandon.
  struct Temp {
    std::string path;
    bool mine = false;
  };
  // Writes e to a temporary file of the shard: this process's own spare
  // for the shard if it is free, else a claimed shared spare or a new file.
  Status WriteEntryFile(int shard, const NewEntry& e, Temp* tmp);
  // Overwrites a claimed shared spare, renamed to `path`, with e. False if
  // no spare could be claimed (then nothing was done).
  bool ClaimSpare(int shard, const NewEntry& e, const std::string& path, Status* s);
  // Gives up a written temporary file: this process's own spare is kept
  // (it holds `size` bytes), any other is unlinked.
  void Abandon(int shard, const Temp& tmp, uint64_t size);
  std::string MineName(int shard) const {
    return ShardPath(shard) + "/" + mine_prefix_ + file::ShardDirName(shard);
  }
  // In a forked child, forgets the parent's own spares (their names carry
  // the parent's pid and the parent goes on using them).
  void CheckFork();
  void DropBad(int shard, const std::string& name, const OpenEntry& o, bool locked,
               const std::string& why);
  void DropExpired(int shard, const std::string& name, const OpenEntry& o, bool locked);
  void LogBadOnce(const std::string& path, ino_t ino, const std::string& why);
  // Puts tmp in place as the entry of name, with the lock held; counts it.
  // *vanished: the temporary file was gone (swept as a dead writer's), and
  // nothing changed.
  Status CommitLocked(int shard, const std::string& name, const Temp& tmp, uint64_t size,
                      bool* vanished);
  // After tmp.path took the place of an entry by an exchange, the old
  // entry file is at tmp.path: keep it as this process's spare, or retire it.
  void TakeOld(int shard, const Temp& tmp);
  // Before a write of `bytes`: evict until the bounds allow it.
  // Evicts until the bounds leave room for a new file of `bytes` (0: until
  // they hold again). The entry `protect` (just written) is never taken.
  Status MakeRoom(uint64_t bytes, const std::string& protect);
  // Whether key has a live, intact entry, looked at without the lock.
  Status LiveUnlocked(int shard, const std::string& name, std::string_view key, bool* live);
  Status Cull();
  int PickVictimShard();
  Status ScanShard(int shard, const ScanPolicy& pol, ScanResult* res);
  Status ScanShardLocked(int shard, const ScanPolicy& pol, ScanResult* res);
  // After a write into shard: every max(kRecountMin, entries) writes, a
  // scan that recounts it and sweeps expired and stale files.
  void NoteWrite(int shard);
  Status TooLargeError(std::string_view key, uint64_t val_len) const;

  Config cfg_;
  uint64_t spare_budget_ = 0;  // bytes all shared spares may hold (SpareBudget)
  // This process's own spare per shard ("Own spares" above): kMineFree (no
  // file, the name is free), kMineBusy (a thread is writing or committing
  // it), or kMineHas + the file's size (there, idle).
  static constexpr uint64_t kMineFree = 0, kMineBusy = 1, kMineHas = 2;
  std::atomic<uint64_t> mine_[kShards] = {};
  std::string mine_prefix_;          // ".tmp.<pid>.<16 hex>": the own spares' names
  std::atomic<pid_t> mine_pid_{0};   // the pid in mine_prefix_
  std::mutex mine_mu_;
  std::atomic<bool> exchange_ok_{true};  // renameat2(RENAME_EXCHANGE) works here
  std::unique_ptr<Ledger> ledger_;
  std::string dir_;
  std::mutex log_mu_;
  std::set<std::pair<std::string, ino_t>> logged_;
  std::atomic<int64_t> next_health_{0};  // CoarseMs() of the next Health check
  std::mutex health_mu_;
};

// ---------------------------------------------------------------- helpers --

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
      return Status::IOError(Where() + "cannot stat the cache directory " + dir_ + ": " +
                             ErrnoText(errno));
    if (!create) return Status::OK();  // a read finds nothing; a write makes it again
    Status s = file::MakeDirs(dir_, Where());
    if (!s.ok()) return s;
    if (lstat(dir_.c_str(), &st) != 0)
      return Status::IOError(Where() + "cannot stat the cache directory " + dir_ + ": " +
                             ErrnoText(errno));
    Log(LogLevel::kWarning, region(), kind(),
        "the cache directory " + dir_ + " was removed; made it again (mode 0700)");
    fixed = true;
  }
  Status s = file::CheckOwned(st, S_IFDIR, "cache directory", dir_, Where());
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

void FileStore::RecountShard(int shard) {
  ScanPolicy pol;
  pol.expired = false;
  ScanResult res;
  Status st = ScanShard(shard, pol, &res);
  if (st.ok()) return;
  Log(LogLevel::kError, region(), kind(), st.message());
  // Not countable (a refused shard directory): nothing is counted there.
  auto& slot = ledger_->slot(shard);
  slot.entries.store(0, std::memory_order_relaxed);
  slot.bytes.store(0, std::memory_order_relaxed);
  slot.spares.store(0, std::memory_order_relaxed);
  slot.spare_bytes.store(0, std::memory_order_relaxed);
  slot.temp_bytes.store(0, std::memory_order_relaxed);
  slot.oldest_ms.store(0, std::memory_order_relaxed);
}

Status FileStore::PrepareShard(int shard) {
  std::string path = ShardPath(shard);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return Status::IOError(Where() + "cannot stat " + path + ": " + ErrnoText(errno));
    // Missing: the whole directory may have been removed, or removed and
    // made again by someone else. Checked before anything is made in it.
    if (lstat(dir_.c_str(), &st) != 0)
      return Status::IOError(Where() + "the cache directory " + dir_ + " is gone: " +
                             ErrnoText(errno));
    Status s = file::CheckOwned(st, S_IFDIR, "cache directory", dir_, Where());
    if (!s.ok()) return s;
    if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
      return Status::IOError(Where() + "cannot create " + path + ": " + ErrnoText(errno));
    if (lstat(path.c_str(), &st) != 0)
      return Status::IOError(Where() + "cannot stat " + path + ": " + ErrnoText(errno));
  }
  return file::CheckOwned(st, S_IFDIR, "shard directory", path, Where());
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
        return file::CheckOwned(st, S_IFDIR, "shard directory", path, Where());
    }
    return Status::IOError(Where() + "cannot open the shard directory " + path + ": " +
                           ErrnoText(err));
  }
  struct stat st;
  Status s = fstat(fd, &st) == 0
                 ? file::CheckOwned(st, S_IFDIR, "shard directory", path, Where())
                 : Status::IOError(Where() + "cannot stat " + path + ": " + ErrnoText(errno));
  if (!s.ok()) {
    close(fd);
    return s;
  }
  *d = fdopendir(fd);
  if (!*d) {
    int err = errno;
    close(fd);
    return Status::IOError(Where() + "cannot list " + path + ": " + ErrnoText(err));
  }
  return Status::OK();
}

void FileStore::LogBadOnce(const std::string& path, ino_t ino, const std::string& why) {
  {
    std::lock_guard<std::mutex> g(log_mu_);
    if (logged_.size() > 4096) logged_.clear();  // bounded; a repeat line is harmless
    if (!logged_.emplace(path, ino).second) return;
  }
  Log(LogLevel::kWarning, region(), kind(),
      "damaged entry file " + path + ": " + why + " (treated as a miss, removed)");
}

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
  Status s = file::ReadHead(PathOf(shard, name), writable, want, o, &head, &why, first, key.size());
  if (!s.ok()) return Status::IOError(Where() + s.message());
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

Status FileStore::TooLargeError(std::string_view key, uint64_t val_len) const {
  return Status::TooLarge(Where() + "value of " + std::to_string(val_len) + " bytes (key of " +
                          std::to_string(key.size()) + " bytes) exceeds the maximum item size of " +
                          std::to_string(cfg_.max_item) +
                          " bytes (OPTIONS MAX_ITEM_SIZE); nothing was stored");
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
      std::string why;
      if (file::ReadValue(&o, out, &why)) {
        if (!peek) c.hits.fetch_add(1, std::memory_order_relaxed);
        return Status::OK();
      }
      out->data.clear();
      out->at = nullptr;
      if (!judge) continue;
      DropBad(shard, name, o, false, why);
    }
    break;
  }
  if (!peek) c.misses.fetch_add(1, std::memory_order_relaxed);
  return Status::NotFound();
}

// ---------------------------------------------------------------- writing --

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
    // rewritten by this process's next write into the shard (Own spares).
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
      return Status::IOError(Where() + "cannot rename " + tmp.path + " to " + path + ": " +
                             ErrnoText(err));
    }
    if (err != EINVAL && err != ENOSYS && err != EOPNOTSUPP) {
      if (tmp.mine) mine_[shard].store(kMineFree, std::memory_order_release);
      unlink(tmp.path.c_str());
      return Status::IOError(Where() + "cannot exchange " + tmp.path + " with " + path + ": " +
                             ErrnoText(err));
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
  // replaced by it: it can then be reused (Inode reuse, above), and ext4
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
    return Status::IOError(Where() + "cannot rename " + tmp.path + " to " + path + ": " +
                           ErrnoText(err));
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
    int err = file::FillAndClose(fd, e, uint64_t(st.st_size), cfg_.fsync);
    if (err != 0) {
      unlink(path.c_str());
      *s = Status::IOError(Where() + "cannot write " + path + ": " + ErrnoText(err));
    } else {
      *s = Status::OK();
    }
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
    Status s;
    if (st >= kMineHas) {
      // The steady state of an overwrite: rewrite the file the last
      // exchange left here, no rename, no create.
      int fd = file::OpenNoFollow(tmp->path, O_WRONLY | O_NONBLOCK);
      if (fd >= 0) {
        int err = file::FillAndClose(fd, e, st - kMineHas, cfg_.fsync);
        if (err == 0) return Status::OK();
        // Failed half-way (a full disk): the file is ours and partial.
        unlink(tmp->path.c_str());
        m.store(kMineFree, std::memory_order_release);
        return Status::IOError(Where() + "cannot write " + tmp->path + ": " + ErrnoText(err));
      }
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
      if (fd >= 0) {
        int err = file::FillAndClose(fd, e, 0, cfg_.fsync);
        if (err == 0) return Status::OK();
        unlink(tmp->path.c_str());
        m.store(kMineFree, std::memory_order_release);
        return Status::IOError(Where() + "cannot write " + tmp->path + ": " + ErrnoText(err));
      }
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
  return file::WriteTemp(ShardPath(shard), e, cfg_.fsync, Where(), &tmp->path);
}

void FileStore::Abandon(int shard, const Temp& tmp, uint64_t size) {
  if (tmp.mine) {
    mine_[shard].store(size + kMineHas, std::memory_order_release);
    return;
  }
  unlink(tmp.path.c_str());
}

Status FileStore::Write(std::string_view key, std::string_view data, uint32_t flags, int64_t exp,
                        Mode mode) {
  if (key.size() > cfg_.max_item || data.size() > cfg_.max_item - key.size())
    return TooLargeError(key, data.size());
  if (flags & kFlagZstd)
    return Status::InvalidArgument(Where() + "flags include kFlagZstd, which the file store "
                                   "reserves for its own compression");
  if (Status h = Health(false, nullptr, true); !h.ok()) return h;
  std::string name = file::EntryName(key);
  int shard = file::ShardOfEntryName(name);
  NewEntry e;
  file::BuildEntry(key, data, flags, exp, NowMs(), cfg_.compress_min, cfg_.compress_level, &e);
  Status s;
  if (mode != Mode::kSet) {
    // A first look without the lock: an add of a key that is there (Django's
    // add as a lock) or a replace of one that is not is answered without
    // writing anything. The answer is what the store held at this moment,
    // so it is as correct as the one under the lock; a write still checks
    // again under the lock below.
    bool live = false;
    if (!(s = LiveUnlocked(shard, name, key, &live)).ok()) return s;
    if (live == (mode == Mode::kAdd)) return Status::NotStored();
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
    if (mode != Mode::kSet) {
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
        std::string why;
        if (!file::VerifyBody(&o, &why)) {
          DropBad(shard, name, o, true, why);
          live = false;
        }
      }
      if (live == (mode == Mode::kAdd)) {
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
      return Status::IOError(Where() + "temporary file " + tmp.path + " vanished before its rename");
    }
    break;
  }
  if (cfg_.fsync) {
    int err = file::SyncDir(ShardPath(shard));
    if (err != 0)
      return Status::IOError(Where() + "cannot sync " + ShardPath(shard) + ": " + ErrnoText(err));
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
    std::string why;
    if (file::VerifyBody(&o, &why)) {
      *live = true;
      return Status::OK();
    }
    if (judge) DropBad(shard, name, o, false, why);
  }
  return Status::OK();
}

Status FileStore::Touch(std::string_view key, int64_t expires_ms) {
  if (Status h = Health(false); !h.ok()) return h;
  std::string name = file::EntryName(key);
  int shard = file::ShardOfEntryName(name);
  // Under the lock the file we rewrite is the current one: a rename cannot
  // slip in between our check and our write.
  ShardLock lock(ledger_.get(), shard);
  if (!lock.status().ok()) return lock.status();
  OpenEntry o;
  Probe p;
  Status s = ProbeEntry(shard, name, key, true, true, kHeadRead, &o, &p);
  if (!s.ok()) return s;
  if (p != Probe::kLive) return Status::NotFound();
  int err = file::RewriteExpiry(&o, expires_ms, cfg_.fsync);
  if (err != 0)
    return Status::IOError(Where() + "cannot rewrite the expiry of " + PathOf(shard, name) + ": " +
                           ErrnoText(err));
  return Status::OK();
}

Status FileStore::Delete(std::string_view key) {
  if (Status h = Health(false); !h.ok()) return h;
  std::string name = file::EntryName(key);
  int shard = file::ShardOfEntryName(name);
  ShardLock lock(ledger_.get(), shard);
  if (!lock.status().ok()) return lock.status();
  OpenEntry o;
  Probe p;
  Status s = ProbeEntry(shard, name, key, true, false, kHeadRead, &o, &p);
  if (!s.ok()) return s;
  if (p != Probe::kLive) return Status::NotFound();
  if (!DropLocked(shard, name, o, true)) return Status::NotFound();
  return Status::OK();
}

Status FileStore::Incr(std::string_view key, int64_t delta, int64_t* result) {
  if (Status h = Health(false); !h.ok()) return h;
  std::string name = file::EntryName(key);
  int shard = file::ShardOfEntryName(name);
  // The whole read-modify-write holds the shard lock, and every rename into
  // the shard takes it too: no write can land between our read and ours.
  ShardLock lock(ledger_.get(), shard);
  if (!lock.status().ok()) return lock.status();
  OpenEntry o;
  Probe p;
  Status s = ProbeEntry(shard, name, key, true, false, kFirstRead, &o, &p);
  if (!s.ok()) return s;
  if (p != Probe::kLive) return Status::NotFound();
  if (Encoding(o.h.flags) != kEncInt) return Status::NotANumber();
  Value v;
  std::string why;
  if (!file::ReadValue(&o, &v, &why)) {
    DropBad(shard, name, o, true, why);
    return Status::NotFound();
  }
  int64_t cur = 0;
  if (!ParseInt64(v.data, &cur)) {
    // Decimal but beyond int64 is out of range; anything else is not a number.
    bool digits = !v.data.empty();
    for (size_t i = 0; i < v.data.size(); ++i)
      if (!(std::isdigit(static_cast<unsigned char>(v.data[i])) || (i == 0 && v.data[i] == '-')))
        digits = false;
    return digits ? Status::OutOfRange() : Status::NotANumber();
  }
  int64_t next = 0;
  if (__builtin_add_overflow(cur, delta, &next)) return Status::OutOfRange();
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, next);
  (void)ec;
  NewEntry e;
  file::BuildEntry(key, std::string_view(buf, size_t(end - buf)), v.flags, o.h.expires_ms, NowMs(),
                   0, 0, &e);
  Temp tmp;
  s = WriteEntryFile(shard, e, &tmp);
  if (!s.ok()) return s;
  bool vanished = false;  // cannot be: temporary files are swept under the lock we hold
  s = CommitLocked(shard, name, tmp, e.FileSize(), &vanished);
  if (!s.ok()) return s;
  if (vanished)
    return Status::IOError(Where() + "temporary file " + tmp.path + " vanished before its rename");
  // The shard lock is held: the bounds are enforced by the next write.
  *result = next;
  return Status::OK();
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
      slot.entries.store(0, std::memory_order_relaxed);
      slot.bytes.store(0, std::memory_order_relaxed);
      slot.writes.store(0, std::memory_order_relaxed);
      slot.spares.store(0, std::memory_order_relaxed);
      slot.spare_bytes.store(0, std::memory_order_relaxed);
      slot.temp_bytes.store(0, std::memory_order_relaxed);
      slot.oldest_ms.store(0, std::memory_order_relaxed);
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
      // creates right after a burst of unlinks ("Inode reuse").
      struct stat st;
      if (fstatat(sfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          Retire(shard, sfd, name, uint64_t(st.st_size), S_ISREG(st.st_mode)))
        ++res->removed_all;
      continue;
    }
    OpenEntry o;
    Head head;
    std::string why;
    Status s = file::ReadHead(path, false, kHeaderSize, &o, &head, &why);
    if (!s.ok()) return Status::IOError(Where() + s.message());
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

Status FileStore::RecountAll() {
  // Every shard is counted; one that cannot be (refused) counts as empty,
  // and the first such error is returned.
  PassFailures failed;
  for (int s = 0; s < kShards; ++s) {
    ScanPolicy pol;
    pol.expired = false;
    ScanResult res;
    failed.Add(ScanShard(s, pol, &res));
  }
  return failed.Result();
}

// ------------------------------------------------------------- inspection --

Status FileStore::Clear() {
  Status h = Health(false);
  if (!h.ok()) return h;
  // A shard that is refused (a link, not ours) is left alone; the others
  // are cleared, and the first refusal is returned.
  PassFailures failed;
  for (int s = 0; s < kShards; ++s) {
    ScanPolicy pol;
    pol.all = true;
    ScanResult res;
    failed.Add(ScanShard(s, pol, &res));
  }
  return failed.Result();
}

Status FileStore::PurgeExpired(uint64_t* removed) {
  *removed = 0;
  Status h = Health(false);
  if (!h.ok()) return h;
  PassFailures failed;
  for (int s = 0; s < kShards; ++s) {
    ScanPolicy pol;
    ScanResult res;
    failed.Add(ScanShard(s, pol, &res));
    *removed += res.expired;
  }
  if (Status st = failed.Result(); !st.ok()) return st;
  // Every shard was just recounted: if the truth is above the bounds (counts
  // left short by writers killed mid-write), evict down to them now.
  return MakeRoom(0, std::string());
}

// The cursor is "<shard>/<name>": the listing resumes after that file name
// in that shard ("" = from the shard's start). Names within a shard are
// visited in sorted order, so a page boundary is a stable position even when
// files come and go.
Status FileStore::List(const ListOptions& opts, ListPage* page) {
  if (Status h = Health(false); !h.ok()) return h;
  page->entries.clear();
  page->next_cursor.clear();
  page->scanned = 0;
  int shard = 0;
  std::string after;
  if (!opts.cursor.empty()) {
    const std::string& c = opts.cursor;
    size_t slash = c.find('/');
    int v = -1;
    if (slash == 2) {
      auto [p, ec] = std::from_chars(c.data(), c.data() + 2, v, 16);
      if (ec != std::errc() || p != c.data() + 2) v = -1;
    }
    after = slash == std::string::npos ? "" : c.substr(slash + 1);
    if (v < 0 || v >= kShards || (!after.empty() && file::ShardOfName(after) != v))
      return Status::InvalidArgument(Where() + "bad listing cursor '" + c + "'");
    shard = v;
  }
  size_t limit = opts.limit ? opts.limit : 1000;
  int64_t now = NowMs();
  for (; shard < kShards; ++shard, after.clear()) {
    std::string dirpath = ShardPath(shard);
    std::vector<std::string> names;
    {
      DIR* d = nullptr;
      bool missing = false;
      Status ds = OpenShardDir(shard, &d, &missing);
      if (!ds.ok()) return ds;
      if (missing) continue;
      while (dirent* de = readdir(d)) {
        std::string_view nm(de->d_name);
        if (file::ShardOfName(nm) == shard && (after.empty() || nm > after)) names.emplace_back(nm);
      }
      closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (size_t i = 0; i < names.size(); ++i) {
      if (page->entries.size() >= limit || page->scanned >= kListScanCap + limit) {
        page->next_cursor = file::ShardDirName(shard) + "/" + (i ? names[i - 1] : after);
        return Status::OK();
      }
      page->scanned++;
      OpenEntry o;
      Head head;
      std::string why;
      // A file that fails its checks is read again from a fresh open before
      // it is judged: without the lock, it may be a reused file being
      // rewritten under us (Inode reuse).
      bool bad = false;
      for (int attempt = 1; attempt <= kReadAttempts; ++attempt) {
        o.Reset();
        Status s = file::ReadHead(dirpath + "/" + names[i], false, kHeadRead, &o, &head, &why);
        if (!s.ok()) return Status::IOError(Where() + s.message());
        bad = head == Head::kBad;
        if (head == Head::kOk && file::EntryName(o.key()) != names[i]) {
          bad = true;
          why = "holds a key that does not hash to its name (a foreign or misplaced file)";
        }
        if (!bad) break;
      }
      if (head == Head::kAbsent) continue;
      if (bad) {
        if (o.fd >= 0) DropBad(shard, names[i], o, false, why);
        continue;
      }
      if (!opts.include_expired && IsExpired(o.h.expires_ms, now)) continue;
      if (!opts.glob.empty() && !GlobMatch(opts.glob, o.key())) continue;
      EntryInfo e;
      e.key.assign(o.key());
      e.value_size = o.h.raw_len;
      e.expires_ms = o.h.expires_ms;
      e.stored_ms = o.h.stored_ms;
      e.flags = o.h.flags & ~uint32_t(kFlagZstd);
      page->entries.push_back(std::move(e));
    }
  }
  return Status::OK();
}

Status FileStore::GetStats(Stats* out) {
  if (Status h = Health(false); !h.ok()) return h;
  *out = Stats{};
  auto& c = ledger_->counters();
  out->entries = ledger_->TotalEntries();
  out->bytes_used = ledger_->TotalBytes();
  out->capacity = cfg_.max_size;
  out->hits = c.hits.load(std::memory_order_relaxed);
  out->misses = c.misses.load(std::memory_order_relaxed);
  out->sets = c.sets.load(std::memory_order_relaxed);
  out->evictions = c.evictions.load(std::memory_order_relaxed);
  out->expirations = c.expirations.load(std::memory_order_relaxed);
  out->extra = {
      {"directory", dir_},
      {"format_version", std::to_string(file::kVersion)},
      {"shards", std::to_string(kShards)},
      {"max_item_size", std::to_string(cfg_.max_item)},
      {"max_entries", std::to_string(cfg_.max_entries)},
      {"cull_frequency", std::to_string(cfg_.cull_frequency)},
      {"compress_min_size", std::to_string(cfg_.compress_min)},
      {"fsync", cfg_.fsync ? "true" : "false"},
      {"eviction", "expired first, then oldest stored, in sampled shards"},
      {"corrupt_removed", std::to_string(c.corrupt_removed.load(std::memory_order_relaxed))},
      {"spare_bytes", std::to_string(ledger_->TotalSpareBytes())},
      {"dead_temp_bytes", std::to_string(ledger_->Totals().temp_bytes)},
      {"files_scanned", std::to_string(c.files_scanned.load(std::memory_order_relaxed))},
      {"evict_scans", std::to_string(c.evict_scans.load(std::memory_order_relaxed))},
      {"created_ms", std::to_string(ledger_->created_ms())},
  };
  return Status::OK();
}

}  // namespace

Status OpenFileStore(const StoreSpec& spec, std::unique_ptr<Store>* out) {
  std::string region = spec.region.empty() ? spec.location : spec.region;
  std::string where = "region '" + region + "': ";
  if (spec.location.empty())
    return Status::InvalidArgument(where + "LOCATION is empty: give the cache directory");
  OptionReader r(region, spec.options);
  Config cfg;
  uint64_t cull = 3, level = 3;
  Status s;
  bool item_given = spec.options.count("MAX_ITEM_SIZE") != 0;
  if (!(s = r.Size("MAX_SIZE", kDefaultMaxSize, &cfg.max_size)).ok()) return s;
  if (!(s = r.Size("MAX_ITEM_SIZE", kDefaultMaxItem, &cfg.max_item)).ok()) return s;
  if (!(s = r.UInt("MAX_ENTRIES", 0, &cfg.max_entries)).ok()) return s;
  if (!(s = r.UInt("CULL_FREQUENCY", 3, &cull)).ok()) return s;
  if (!(s = r.Size("COMPRESS_MIN_SIZE", 0, &cfg.compress_min)).ok()) return s;
  if (!(s = r.UInt("COMPRESS_LEVEL", 3, &level)).ok()) return s;
  if (!(s = r.Bool("FSYNC", false, &cfg.fsync)).ok()) return s;
  if (!(s = r.CheckAllUsed()).ok()) return s;
  if (cfg.max_size < 4096)
    return Status::InvalidArgument(where + "option MAX_SIZE=" + std::to_string(cfg.max_size) +
                                   " is below the smallest useful size of 4096 bytes");
  if (cfg.max_item == 0)
    return Status::InvalidArgument(where + "option MAX_ITEM_SIZE must be above 0");
  // An entry file is the item plus a header; the largest must fit the bound.
  uint64_t fits = cfg.max_size - kHeaderSize;
  if (cfg.max_item > fits) {
    if (item_given)
      return Status::InvalidArgument(where + "option MAX_ITEM_SIZE=" + std::to_string(cfg.max_item) +
                                     " does not fit in MAX_SIZE=" + std::to_string(cfg.max_size) +
                                     " (with its " + std::to_string(kHeaderSize) +
                                     "-byte header)");
    cfg.max_item = fits;
  }
  if (cull > 1000000)
    return Status::InvalidArgument(where + "option CULL_FREQUENCY=" + std::to_string(cull) +
                                   " is not a sensible fraction");
  if (level < 1 || level > 19)
    return Status::InvalidArgument(where + "option COMPRESS_LEVEL=" + std::to_string(level) +
                                   " is not a zstd level from 1 to 19");
  cfg.cull_frequency = uint32_t(cull);
  cfg.compress_level = int(level);

  std::string dir = spec.location;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!(s = file::MakeDirs(dir, where)).ok()) return s;
  // LOCATION is the operator's path: a link as LOCATION (or above it) is
  // followed, once, here. Everything inside is then opened without
  // following any link (file::OpenNoFollow on the resolved path).
  {
    char* real = realpath(dir.c_str(), nullptr);
    if (!real)
      return Status::IOError(where + "cannot resolve the cache directory " + dir + ": " +
                             ErrnoText(errno));
    dir = real;
    free(real);
    struct stat st;
    if (lstat(dir.c_str(), &st) != 0)
      return Status::IOError(where + "cannot stat the cache directory " + dir + ": " +
                             ErrnoText(errno));
    // Another user's directory (say one made in /tmp before the site
    // started), or one others may write in, could hold their files: refused.
    if (!(s = file::CheckOwned(st, S_IFDIR, "cache directory", dir, where)).ok()) return s;
    // The shard directories there already: real directories of ours only.
    for (int i = 0; i < kShards; ++i) {
      std::string shard = dir + "/" + file::ShardDirName(i);
      if (lstat(shard.c_str(), &st) != 0) {
        if (errno == ENOENT) continue;
        return Status::IOError(where + "cannot stat " + shard + ": " + ErrnoText(errno));
      }
      if (!(s = file::CheckOwned(st, S_IFDIR, "shard directory", shard, where)).ok()) return s;
    }
  }
  // Writability is checked now, with a real file: access(2) says yes to root
  // on a read-only mount, and an error at the first set is too late.
  {
    std::string probe = dir + "/" + file::TempName();
    int fd = file::OpenNoFollow(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
      return Status::IOError(where + "the cache directory " + dir + " is not writable: " +
                             ErrnoText(errno));
    close(fd);
    unlink(probe.c_str());
  }
  auto ledger = std::make_unique<Ledger>();
  Ledger* lp = ledger.get();
  bool fresh = false;
  std::string damage;
  if (!(s = ledger->Open(dir + "/" + kLedgerName, where, &fresh, &damage)).ok()) return s;
  auto store = std::make_unique<FileStore>(region, spec.location, dir, cfg, std::move(ledger));
  if (fresh) {
    if (!damage.empty())
      Log(LogLevel::kWarning, region, "file",
          "the ledger " + lp->path() + " was damaged (" + damage + "); counting the shards again");
    // A new ledger over a directory that may already hold entries (a
    // deleted or damaged ledger, another version's): count what is there.
    // On failure the store's destruction closes the ledger, which drops
    // the init lock.
    if (!(s = store->RecountAll()).ok()) return s;
    lp->FinishInit();
  }
  *out = std::move(store);
  return Status::OK();
}

}  // namespace regioncache
