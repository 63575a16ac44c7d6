// FileStore, the Store of regioncache/file_store.h: the class and its
// constants, private to native/file/. The design (one file per entry, shard
// locks in the ledger, eviction by sampled shard scans, spare-inode reuse)
// is told in FORMAT.md, "How the store works"; the code is split by concern:
//   file_store.cc    the cache contract: get, set/add/replace, touch, delete,
//                    incr, compare-and-swap; what a damaged or expired file
//                    found on the way means
//   file_spares.cc   writing an entry file and putting it in place (exchange
//                    or rename under the shard lock), spare-inode recycling
//   file_scan.cc     shard scans: recounts, eviction, culls, clear, expiry purge
//   file_list.cc     listing entries a page at a time, stats
//   file_health.cc   the directory and the ledger checked and repaired, shard
//                    directories opened and made safely
//   file_options.cc  OpenFileStore: OPTIONS, LOCATION, the ledger opened
// Below it: file_entry (one entry file), file_ledger (counts and shard
// locks), file_format (the bytes and the names), file_io (POSIX helpers).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/store_base.h"
#include "file/file_entry.h"
#include "file/file_format.h"
#include "file/file_io.h"
#include "file/file_ledger.h"
#include "regioncache/clock.h"
#include "regioncache/log.h"
#include "regioncache/status.h"
#include "regioncache/store.h"

namespace regioncache::file {

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
// create of a full small region pays ext4's slow path: FORMAT.md, "Inode reuse").
inline uint64_t SpareBudget(uint64_t max_size) { return std::max(max_size / 16, kSpareBudgetMin); }

// A coarse monotonic clock for the health gate: on every operation's path,
// and about 9 ns where CLOCK_REALTIME costs about 50 here.
inline int64_t CoarseMs() {
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

class FileStore final : public StoreBase {
 public:
  // dir: LOCATION resolved (realpath), which every path inside starts with.
  FileStore(std::string region, std::string location, std::string dir, Config cfg,
            std::unique_ptr<Ledger> ledger)
      : StoreBase(std::move(region), std::move(location)),
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
  Status Touch(std::string_view key, int64_t expires_ms) override;
  Status Delete(std::string_view key) override;
  Status Incr(std::string_view key, int64_t delta, int64_t* result) override;
  // Under the shard lock: the live entry read whole (checksum checked; a
  // damaged one is dropped, NotFound), compared, then dropped or replaced
  // by `with` written as a set writes it (compressed, counted in sets).
  Status CompareAndSwap(std::string_view key, std::string_view expected, uint32_t expected_flags,
                        const WriteItem* with) override;
  Status Clear() override;

  Status List(const ListOptions& opts, ListPage* page) override;
  Status GetStats(Stats* out) override;
  Status PurgeExpired(uint64_t* removed) override;
  // Into the ledger, beside hits and misses: every process of the region.
  void Count(Event e, uint64_t n = 1) override {
    (e == Event::kError ? ledger_->errors() : ledger_->stampede_waits())
        .fetch_add(n, std::memory_order_relaxed);
  }

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
  // What can fail returns a Status naming the region. A bool or enum below
  // is an answer, not an error: what was found (Probe), whether a file was
  // removed or retired (DropLocked, Retire) or a spare claimed (ClaimSpare).
  //
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
  Status Write(WriteMode mode, std::string_view key, std::string_view data, uint32_t flags,
               int64_t expires_ms) override;
  // What every write checks first: the size limit (TooLarge) and flags
  // free of kFlagZstd (InvalidArgument).
  Status CheckItem(std::string_view key, std::string_view data, uint32_t flags) const;
  // With the shard lock held: writes e and puts it in place of name's
  // entry (incr, compare-and-swap). Counts the shard's bytes, not sets.
  Status ReplaceLocked(int shard, const std::string& name, const NewEntry& e);
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
  // Overwrites a claimed shared spare, renamed to `path`, with e; *s says
  // how that went. False if no spare could be claimed (then nothing was
  // done): the bool is the answer to "was there one", not an error.
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
  // Evicts until the bounds leave room for a new file of `bytes` (before a
  // write; 0: until they hold again). The entry `protect` (just written) is
  // never taken.
  Status MakeRoom(uint64_t bytes, const std::string& protect);
  // Finds key's live entry with its shard locked (after the health check)
  // and returns fn(shard, name, entry) with the lock still held; NotFound
  // if there is none. Touch, delete and incr.
  template <typename Fn>
  Status WithLiveLocked(std::string_view key, bool writable, size_t want, Fn&& fn);
  // Whether key has a live, intact entry, looked at without the lock.
  Status LiveUnlocked(int shard, const std::string& name, std::string_view key, bool* live);
  Status Cull();
  int PickVictimShard();
  Status ScanShard(int shard, const ScanPolicy& pol, ScanResult* res);
  // ScanShard over every shard: the first failure, naming how many more
  // shards failed (one status for the pass, not 256); *expired, if given,
  // gains the expired entries removed.
  Status ScanAll(const ScanPolicy& pol, uint64_t* expired = nullptr);
  Status ScanShardLocked(int shard, const ScanPolicy& pol, ScanResult* res);
  // After a write into shard: every max(kRecountMin, entries) writes, a
  // scan that recounts it and sweeps expired and stale files.
  void NoteWrite(int shard);

  Config cfg_;
  uint64_t spare_budget_ = 0;  // bytes all shared spares may hold (SpareBudget)
  // This process's own spare per shard (FORMAT.md, "Own spares"): kMineFree (no
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

}  // namespace regioncache::file
