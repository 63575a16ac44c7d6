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

inline constexpr uint64_t kDefaultMaxSize = 1ull << 30;
inline constexpr uint64_t kDefaultMaxItem = 64ull << 20;
inline constexpr int64_t kStaleTempMs = 10 * 60 * 1000;  // older temporary files are a dead writer's
inline constexpr size_t kFirstRead = 16 * 1024;           // one pread holds most entries whole
inline constexpr size_t kHeadRead = kHeaderSize + 256;     // header and a typical key
inline constexpr uint64_t kRecountMin = 256;               // writes into a shard between recounts
inline constexpr int64_t kEvictFraction = 8;               // an eviction scan takes 1/8 of a shard
inline constexpr uint64_t kListScanCap = 10000;            // files examined per List page at most
inline constexpr char kLedgerName[] = "regioncache.stats";
inline constexpr uint64_t kSpareMax = 64 * 1024;          // larger files are unlinked, not kept
inline constexpr int kReadAttempts = 3;                    // opens before a file is judged damaged
inline constexpr int64_t kOrphanTempMs = 24 * 3600 * 1000; // a live writer's temp older than this is lost
inline constexpr uint64_t kSpareBudgetMin = 4ull << 20;    // shared spares may hold at least this much
inline constexpr int64_t kHealthEveryMs = 500;             // ledger and directory checked this often

// Bytes the shared spares of a region may hold: a sixteenth of MAX_SIZE, but
// at least kSpareBudgetMin, so a small region keeps enough spares for its
// evictions to feed its creates (otherwise every eviction unlinks and every
// create of a full small region pays ext4's slow path, "Inode reuse").
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
  Status ScanShardLocked(int shard, const ScanPolicy& pol, ScanResult* res);
  // After a write into shard: every max(kRecountMin, entries) writes, a
  // scan that recounts it and sweeps expired and stale files.
  void NoteWrite(int shard);

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

}  // namespace regioncache::file
