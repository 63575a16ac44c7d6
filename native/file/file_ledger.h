// The ledger: a small file in the store directory ("regioncache.stats"),
// mapped shared by every process using the store. It holds
//  - per-shard entry and byte counts, so bounds are checked without listing
//    the directory (O(1) per write);
//  - the region's counters (hits, misses, sets, evictions, ...), shared by
//    every process and kept across restarts;
// and its bytes double as the shard locks: shard i is locked by an
// open-file-description lock (F_OFD_SETLKW) on byte i, which the kernel
// drops when the holder dies, so a kill -9 never leaves a shard locked.
//
// Invariant: every rename into and unlink from a shard directory happens
// with that shard locked, and the shard's counts change under the same lock.
// The counts are therefore exact except after a process dies between the
// two, and a shard's counts are recomputed from its directory (Recount, in
// the store) every max(256, entries) writes into it, which repairs that.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "file/file_format.h"
#include "regioncache/status.h"

namespace regioncache::file {

struct LedgerCounters {
  std::atomic<uint64_t> hits, misses, sets, evictions, expirations;
  std::atomic<uint64_t> corrupt_removed;  // damaged or foreign entry files removed
  std::atomic<uint64_t> files_scanned;    // entry files examined by eviction and recounts
  std::atomic<uint64_t> evict_scans;      // shard scans made by eviction
};

struct alignas(64) ShardSlot {
  std::atomic<int64_t> entries;  // signed: a crash can leave it briefly off by one
  std::atomic<int64_t> bytes;
  std::atomic<uint64_t> writes;  // writes since the last recount
  // Spare files of this shard: bit i set = ".spare.<i>" is there to be
  // claimed; spare_bytes their sizes. Advisory (a claim that finds no file
  // creates one); exact again after every scan of the shard.
  std::atomic<uint32_t> spares;
  std::atomic<int64_t> spare_bytes;
  // Store time of the shard's oldest entry as of its last scan (0: not
  // known yet, which makes it the first choice). It only errs old: later
  // writes are newer, and removals make the true oldest newer still.
  std::atomic<int64_t> oldest_ms;
  // Bytes of temporary files of dead writers found by the shard's last scan
  // (kept until swept, 10 minutes): counted against MAX_SIZE. In bytes that
  // were padding before, so older ledgers read 0 here.
  std::atomic<int64_t> temp_bytes;
};
static_assert(sizeof(ShardSlot) == 64);

// Sums over the shards, with the first slot whose numbers cannot be true
// (random bytes, a torn write by another program): the caller recounts it.
struct LedgerTotals {
  uint64_t entries = 0, bytes = 0, temp_bytes = 0;
  int implausible = -1;  // a shard whose slot is not plausible, or -1
};

class Ledger {
 public:
  ~Ledger();

  // Opens or creates `path` (never through a link; a regular file of the
  // effective uid, not writable by group or others, with one link). If the
  // ledger is new, or its size, header or any slot is not plausible, it is
  // zeroed, *fresh is set and the init lock stays held: the caller counts
  // every shard, then calls FinishInit(). Otherwise returns unlocked.
  // *damage says what was wrong with an existing ledger ("" if nothing).
  Status Open(const std::string& path, const std::string& region, bool* fresh,
              std::string* damage);
  void FinishInit();
  // Drops the init lock without marking the ledger valid (a failed count:
  // the next health check of any process counts again).
  void AbandonInit();
  const std::string& path() const { return path_; }

  // Whether this mapping is no longer the ledger at path: the file was
  // deleted or replaced, cut short, or a page of it had to be replaced by
  // private memory (the SIGBUS handler). One fstat and one lstat.
  bool Stale(std::string* why);
  // Whether the shared header still says "ledger" (not overwritten).
  bool HeaderIntact() const;
  // Maps the ledger now at path_ (made if missing) in place of this one, at
  // the same address and descriptor number; *fresh as for Open.
  Status Reattach(bool* fresh, std::string* damage);
  // Zeroes a ledger whose header was overwritten (under the init lock, if
  // it is still bad then): *fresh as for Open.
  Status Reinit(bool* fresh);

  LedgerTotals Totals() const;
  // The bytes a bound check needs (entries' and dead temporary files'),
  // summed without judging each slot: every write's fast path. Only when
  // it says "over" does the caller look closer (Totals).
  uint64_t BytesForBound() const;
  // Whether a slot's numbers can be true: counts within what the file
  // system holding the ledger can hold (its size and inodes), times sane.
  bool Plausible(const ShardSlot& s) const;

  LedgerCounters& counters() { return mem_->counters; }
  std::atomic<uint64_t>& errors() { return mem_->errors; }
  std::atomic<uint64_t>& stampede_waits() { return mem_->stampede_waits; }
  ShardSlot& slot(int shard) { return mem_->slots[shard]; }
  int64_t created_ms() const { return mem_->created_ms; }

  // Sums over all shards (clamped at 0).
  uint64_t TotalEntries() const;
  uint64_t TotalBytes() const;
  uint64_t TotalSpareBytes() const;

  // Shard locks: a mutex for the threads of this process, then the OFD lock
  // for other processes. Lock returns an IOError only if fcntl fails.
  Status LockShard(int shard);
  void UnlockShard(int shard);

 private:
  struct Mem {
    uint64_t magic;
    uint32_t version;
    uint32_t nshards;
    int64_t created_ms;
    // In bytes that were reserved (zero) before, so an older ledger reads 0
    // here and the ledger's version and layout stay as they were; zeroed
    // with the counters. LedgerCounters has no room left on its line.
    std::atomic<uint64_t> errors;          // failures the Python layer saw (Store::Count)
    std::atomic<uint64_t> stampede_waits;  // callers that waited for another's computation
    uint64_t reserved[3];
    alignas(64) LedgerCounters counters;
    ShardSlot slots[kShards];
  };

  Status RangeLock(off_t start, bool lock);
  // Opens path_ with the checks of Open; returns the descriptor or an error.
  Status OpenFile(int* fd);
  // With the init lock held on fd: gives the file its size, and says
  // whether its contents (mapped at mem) are a valid ledger.
  Status SizeLocked(int fd, bool* sized_afresh, uint64_t* old_size);
  // Whether the ledger is one (a predicate: *damage says why not).
  bool ValidLocked(std::string* damage) const;
  // The steps Open and Reattach share once the file is open: the init
  // lock taken and the file given its size (the lock dropped again on
  // failure); then, with the mapping in place, SettleInit keeps a valid
  // ledger (dropping the lock) or zeroes it and sets *fresh (the lock kept
  // for the caller's count). `recount`: zero it even if it looks valid.
  struct InitState {
    bool afresh = false;    // the file was new or had the wrong size
    uint64_t old_size = 0;  // its size before
  };
  Status LockInit(InitState* init);
  Status SettleInit(const InitState& init, bool recount, bool* fresh, std::string* damage);
  void ZeroLocked();
  // After fork() the child shares the parent's open file description, and
  // with it the parent's locks: reopen to get locks of its own.
  Status EnsureOwnFd();

  std::string path_;
  std::string region_;  // named in every error
  int fd_ = -1;
  pid_t pid_ = 0;
  Mem* mem_ = nullptr;
  int reg_ = -1;  // the mapping's slot in the fault guard (GuardMappedFile)
  bool cut_ = false;  // Stale saw a caught SIGBUS: Reattach counts afresh
  int64_t max_bytes_ = int64_t(1) << 50;    // the file system's size (statvfs)
  int64_t max_entries_ = int64_t(1) << 40;  // its inodes
  std::mutex fd_mu_;
  std::mutex shard_mu_[kShards];

 public:
  static constexpr uint64_t kLedgerMagic = 0x314744454c434752ull;  // the bytes "RGCLEDG1"
  static constexpr uint32_t kLedgerVersion = 2;
  static constexpr size_t kSize = sizeof(Mem);
};

// Holds one shard's lock for a scope.
class ShardLock {
 public:
  ShardLock(Ledger* l, int shard) : l_(l), shard_(shard), status_(l->LockShard(shard)) {}
  ~ShardLock() {
    if (status_.ok()) l_->UnlockShard(shard_);
  }
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;
  const Status& status() const { return status_; }

 private:
  Ledger* l_;
  int shard_;
  Status status_;
};

}  // namespace regioncache::file
