// The shared-memory store's private declarations, shared by its files:
//   shm_store.cc    the Store contract (reads, writes, incr, clear),
//                   inspection (listing, stats) and OpenShmStore
//   shm_index.cc    the hash index: the lock-free probe, finding, linking
//                   and unlinking entries
//   shm_arena.cc    the buddy allocator over the block arena
//   shm_evict.cc    SIEVE eviction, expiry sweeps, Django's cull, purging
//   shm_recover.cc  the writers' lock (waiting, breaking), header and size
//                   checks, rebuilding from the block headers
// The public face is regioncache/shm_store.h; the design (layout, concurrency,
// damage, eviction) and this map of the code are in LAYOUT.md.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <xxhash.h>
#if defined(__x86_64__)
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>  // libxxhash's run-time choice of SSE2/AVX2/AVX-512
#endif

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/compress.h"
#include "core/fault_guard.h"
#include "core/store_base.h"
#include "regioncache/clock.h"
#include "regioncache/log.h"
#include "regioncache/shm_store.h"
#include "regioncache/store.h"
#include "shm/shm_layout.h"
#include "shm/shm_segment.h"

namespace regioncache::shm {

// A single relaxed load: fields read without the lock are read exactly once
// into locals, so a concurrent writer cannot change a value between its
// validation and its use.
template <class T>
inline T Ld(const T* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}

constexpr int kOptimisticTries = 4;
constexpr int kReadOnlyTries = 2000;       // read-only readers never lock: retry longer
constexpr uint64_t kDefaultSize = 64ull << 20;
constexpr uint64_t kDefaultMaxItem = 1ull << 20;
constexpr int64_t kDefaultLockTimeoutMs = 10000;
constexpr int64_t kSweepIntervalMs = 1000;  // see SweepExpired
constexpr int64_t kSizeCheckIntervalMs = 100;  // see CheckSize
constexpr uint64_t kWalkChunk = 4096;  // blocks examined per lock hold when listing

// The checksum of a value: XXH3-64 of its bytes, seeded with the key's hash
// and the codec flags, so a value moved to another key or re-flagged fails
// too.
// On x86-64 the library's dispatching entry point picks the widest vector
// unit at run time (3 to 4 times faster than its SSE2 default on 10 KB).
inline uint64_t ValueCheck(const char* v, uint64_t n, uint64_t hash, uint32_t flags) {
#if defined(__x86_64__)
  return XXH3_64bits_withSeed_dispatch(v, n, hash ^ flags);
#else
  return XXH3_64bits_withSeed(v, n, hash ^ flags);
#endif
}

// A structure of the segment that contradicts the checks: thrown by the
// writers' helpers, caught where the lock was taken (ShmStore::Locking).
struct Damage {
  const char* what;
  uint64_t off;
};

// Hidden: the members are called across the store's files, never from
// outside the library (and -fPIC then calls them directly, not via the PLT).
class __attribute__((visibility("hidden"))) ShmStore final : public StoreBase {
 public:
  ShmStore(std::string region, std::string location, std::unique_ptr<shm::Segment> seg,
           uint64_t max_entries, uint32_t cull_frequency, bool read_only, int64_t lock_timeout_ms,
           uint64_t compress_min, int compress_level)
      : StoreBase(std::move(region), std::move(location)),
        seg_(std::move(seg)),
        b_(seg_->base()),
        h_(seg_->header()),
        g_(seg_->geometry()),
        max_item_(seg_->max_item_size()),
        size_(seg_->size()),
        path_("/dev/shm" + ShmSegmentName(this->location())),
        max_entries_(max_entries),
        cull_frequency_(cull_frequency),
        read_only_(read_only),
        lock_timeout_ms_(lock_timeout_ms),
        compress_min_(compress_min),
        compress_level_(compress_level) {}

  Status Get(std::string_view key, Value* out) override {
    return Guarded([&] { return Read(key, out, false); });
  }
  Status Peek(std::string_view key, Value* out) override {
    return Guarded([&] { return Read(key, out, true); });
  }
  Status Touch(std::string_view key, int64_t expires_ms) override {
    return Guarded([&] { return DoTouch(key, expires_ms); });
  }
  Status Delete(std::string_view key) override {
    return Guarded([&] { return DoDelete(key); });
  }
  Status Incr(std::string_view key, int64_t delta, int64_t* result) override {
    return Guarded([&] { return DoIncr(key, delta, result); });
  }
  Status CompareAndSwap(std::string_view key, std::string_view expected, uint32_t expected_flags,
                        const WriteItem* with) override {
    return Guarded([&] { return DoCompareAndSwap(key, expected, expected_flags, with); });
  }
  Status Clear() override {
    return Guarded([&] { return DoClear(); });
  }
  Status GetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                 std::vector<bool>* found) override {
    return Guarded([&] { return DoGetMany(keys, values, found); });
  }

  Status List(const ListOptions& opts, ListPage* page) override {
    return Guarded([&] { return DoList(opts, page); });
  }
  Status GetStats(Stats* out) override {
    return Guarded([&] { return DoGetStats(out); });
  }
  Status PurgeExpired(uint64_t* removed) override {
    return Guarded([&] { return DoPurgeExpired(removed); });
  }
  // Into this CPU's stat slot in the segment, so every process's stats()
  // sees it; a read-only mapping counts in this object instead.
  void Count(Event e, uint64_t n = 1) override {
    if (read_only_) return own_events_.Add(e, n);
    Guarded([&] {
      shm::StatSlot& slot = Slot();
      (e == Event::kError ? slot.errors : slot.stampede_waits).fetch_add(n, std::memory_order_relaxed);
      return Status::OK();
    });
  }

  std::string_view kind() const override { return "shm"; }
  bool MayBlock() const override { return false; }
  uint64_t MaxItemSize() const override { return max_item_; }

 protected:
  // Set, Add and Replace (StoreBase), inside the SIGBUS guard.
  Status Write(WriteMode mode, std::string_view key, std::string_view data, uint32_t flags,
               int64_t exp) override {
    return Guarded([&] { return DoWrite(mode, key, data, flags, exp); });
  }

 private:
  enum class Probe { kHit, kMiss, kExpired, kRetry, kBadCheck };

  // Runs f with a SIGBUS recovery point over the mapping (a FaultJump, see
  // LAYOUT.md "A segment truncated under a process"). Nested guards (a
  // guarded call made by another) keep the outer one's state on return.
  template <class F>
  Status Guarded(F&& f) {
    if (dead_.load(std::memory_order_relaxed)) return DeadStatus();
    FaultJump j;
    if (sigsetjmp(j.jb, 0) != 0) {
      DisarmFaultJump(&j);
      MarkTruncated();
      // The jump skipped Locked's destructor. Release the lock if this
      // thread holds it and the lock word is still inside the file (a
      // robust mutex refuses, EPERM, an unlock by a thread that does not
      // hold it).
      if (!read_only_ &&
          truncated_to_.load(std::memory_order_relaxed) >= static_cast<int64_t>(shm::kHeaderBytes))
        pthread_mutex_unlock(&h_->mutex);
      return DeadStatus();
    }
    ArmFaultJump(&j, b_, b_ + size_);
    Status s = f();
    DisarmFaultJump(&j);
    return s;
  }

  void MarkTruncated() {
    int64_t now = seg_->CurrentSize();
    truncated_to_.store(now, std::memory_order_relaxed);
    bool was = dead_.exchange(true);
    if (!was)
      regioncache::Log(LogLevel::kError, region(), kind(),
          "shared-memory segment " + path_ + " shrank from " + std::to_string(size_) + " to " +
              std::to_string(now) + " bytes under this process; the region refuses every call "
              "until it is reopened (someone truncated the segment)");
  }
  Status DeadStatus() const {
    return Status::IOError(Where() + "shared-memory segment " + path_ + " is shorter than the " +
                           std::to_string(size_) + " bytes mapped (it was truncated under this "
                           "process); reopen the region, or remove the segment to start afresh");
  }
  Status ReadOnlyError(const char* what) const {
    return Status::InvalidArgument(Where() + what + " refused: the region was opened read-only");
  }

  // Holds the writers' mutex; recovers the segment if the previous holder
  // died, breaks the lock if it is held beyond lock_timeout_ms_, and checks
  // the header and the segment's size before handing over.
  class Locked {
   public:
    explicit Locked(ShmStore* s) : s_(s) {
      if (s_->read_only_) {
        status_ = s_->ReadOnlyError("a change of the region");
        return;
      }
      pthread_mutex_t* m = &s_->h_->mutex;
      int rc = pthread_mutex_trylock(m);
      if (rc == EBUSY) rc = s_->WaitForLock();
      if (rc == EOWNERDEAD) {
        s_->h_->recoveries++;
        s_->Log(LogLevel::kWarning, "a process died holding the writers' lock; index rebuilt "
                                    "from the block headers");
        s_->Rebuild();
        pthread_mutex_consistent(m);
        rc = 0;
      }
      if (rc != 0) {
        status_ = Status::Corruption(s_->Where() + "the lock of " + s_->path_ +
                                     " is unusable (" + ErrnoText(rc) +
                                     "); remove the region to reset it");
        return;
      }
      held_ = true;
      if (!s_->CheckSize()) {
        status_ = s_->DeadStatus();
        return;
      }
      s_->CheckHeader();
    }
    ~Locked() {
      // After a truncation the lock is released only if the header is still
      // inside the file (the lock word is then still there to write).
      if (held_ && (!s_->dead_.load(std::memory_order_relaxed) ||
                    s_->truncated_to_.load(std::memory_order_relaxed) >=
                        static_cast<int64_t>(shm::kHeaderBytes)))
        pthread_mutex_unlock(&s_->h_->mutex);
    }
    const Status& status() const { return status_; }

   private:
    ShmStore* s_;
    bool held_ = false;
    Status status_;
  };

  // Marks the seqlock odd for the duration of a modification. A seq found
  // odd under the lock (a writer died mid-change, or damage) stays odd.
  class Modifying {
   public:
    explicit Modifying(Header* h) : h_(h), s_(h->seq.load(std::memory_order_relaxed) | 1) {
      h_->seq.store(s_, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
    }
    ~Modifying() { h_->seq.store(s_ + 1, std::memory_order_release); }

   private:
    Header* h_;
    uint64_t s_;
  };

  // Runs body with the mutex held. A Damage thrown by the body rebuilds the
  // index from the block headers and runs it again; a second one resets the
  // arena; a third gives up with Corruption.
  template <class F>
  Status Locking(F&& body) {
    Locked lock(this);
    if (!lock.status().ok()) return lock.status();
    for (int attempt = 0;; ++attempt) {
      try {
        return body();
      } catch (const Damage& d) {
        std::string what = std::string(d.what) + " at offset " + std::to_string(d.off);
        if (attempt == 0) {
          Log(LogLevel::kWarning, "damaged segment " + path_ + ": " + what +
                                      "; index rebuilt from the block headers");
          Modifying mod(h_);
          Rebuild();
        } else if (attempt == 1) {
          Log(LogLevel::kError, "damaged segment " + path_ + ": " + what +
                                    " after a rebuild; every entry dropped");
          Modifying mod(h_);
          ResetArena();
        } else {
          return Status::Corruption(Where() + "shared-memory segment " + path_ +
                                    " is damaged (" + what + ") and could not be repaired");
        }
      }
    }
  }

  void Log(LogLevel level, const std::string& msg) const {
    regioncache::Log(level, region(), kind(), msg);
  }
  int WaitForLock();
  int BreakLock(uint64_t epoch_seen);
  bool CheckSize();
  void CheckHeader();
  void ResetArena() {
    seg_->ResetArena();
    h_->resets++;
  }

  [[noreturn]] static void Bad(const char* what, uint64_t off) { throw Damage{what, off}; }

  template <class T>
  T* At(uint64_t off) const {
    return reinterpret_cast<T*>(b_ + off);
  }
  uint64_t MaxBlocks() const { return g_.arena_size >> shm::kMinOrder; }
  // An offset that can start a block: inside the arena, on a minimum-block boundary.
  bool ValidOff(uint64_t off) const {
    return off >= g_.arena_off && off < g_.arena_off + g_.arena_size &&
           ((off - g_.arena_off) & ((uint64_t(1) << shm::kMinOrder) - 1)) == 0;
  }
  bool ValidBlock(uint64_t off, uint32_t order) const {
    return ValidOff(off) && order >= shm::kMinOrder && order <= g_.max_order &&
           ((off - g_.arena_off) & (BlockSize(order) - 1)) == 0 &&
           off - g_.arena_off + BlockSize(order) <= g_.arena_size;
  }
  // Key and value fit in a block of this order (no overflow for any input).
  static bool Fits(uint32_t order, uint32_t klen, uint64_t vlen) {
    return vlen <= BlockSize(order) && kItemHeader + klen + vlen <= BlockSize(order);
  }
  // A LIVE entry whose header is consistent, or Damage.
  Item* LiveAt(uint64_t off, const char* what) const {
    if (!ValidOff(off)) Bad(what, off);
    Item* it = At<Item>(off);
    uint32_t order = it->head.order;
    if (it->head.state != kStateLive || !ValidBlock(off, order) ||
        !Fits(order, it->key_len, it->val_len))
      Bad(what, off);
    return it;
  }
  // A free block of this order, or Damage.
  FreeBlock* FreeAt(uint64_t off, uint32_t order, const char* what) const {
    if (!ValidBlock(off, order)) Bad(what, off);
    FreeBlock* fb = At<FreeBlock>(off);
    if (fb->head.state != kStateFree || fb->head.order != order) Bad(what, off);
    return fb;
  }
  bool CheckOk(const Item* it) const {
    const char* v = reinterpret_cast<const char*>(it) + kItemHeader + it->key_len;
    return ValueCheck(v, it->val_len, it->hash, it->flags) == it->check;
  }
  uint8_t* VisitedByte(uint64_t off) const {
    return At<uint8_t>(g_.visited_off + ((off - g_.arena_off) >> shm::kMinOrder));
  }
  uint64_t* Bucket(uint64_t hash) const {
    return At<uint64_t>(g_.buckets_off + (hash & (g_.nbuckets - 1)) * 8);
  }
  shm::StatSlot& Slot() const {
    int cpu = sched_getcpu();
    return h_->stats[static_cast<unsigned>(cpu < 0 ? 0 : cpu) % shm::kStatSlots];
  }
  static uint64_t Hash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }
  static uint32_t OrderFor(uint64_t bytes) {
    uint32_t o = shm::kMinOrder;
    while (BlockSize(o) < bytes) ++o;
    return o;
  }

  Status Read(std::string_view key, Value* out, bool peek);
  // Read without the decompression: the entry as stored (flags may hold
  // kFlagZstd). Sets the visited bit of a hit unless peek; counts misses.
  Status ReadStored(std::string_view key, uint64_t hash, Value* out, bool peek);

  // --- compression (LAYOUT.md, "Compressed values") --------------------------
  // The flags to store data with: flags | kFlagZstd, with the frame in
  // *frame, when OPTIONS COMPRESS_MIN_SIZE is set, data is at least that
  // long, is not an int, and the frame saves at least an eighth; otherwise
  // flags (store data as it is). Called before the lock is taken.
  uint32_t Pack(std::string_view data, uint32_t flags, std::string* frame) const;
  // Replaces a stored frame (out->data, out->flags with kFlagZstd) by the
  // value it holds. Never called with the mutex held. False, with *why set
  // and out->data left as the frame, when the frame lies: no content size,
  // one beyond MAX_ITEM_SIZE less the key, or bytes that do not decompress
  // to exactly that size.
  bool Unpack(std::string_view key, Value* out, std::string* why) const;
  // A frame that lied (Unpack): counted in errors, logged naming the
  // region, and the entry removed if it still holds that frame (a writable
  // mapping only). The caller answers a miss.
  void DropBadFrame(std::string_view key, uint64_t hash, const std::string& frame,
                    const std::string& why);
  void CountError() {
    if (read_only_) own_events_.Add(Event::kError, 1);
    else Slot().errors.fetch_add(1, std::memory_order_relaxed);
  }
  Status ReservedFlagError() const {
    return Status::InvalidArgument(Where() + "flags include kFlagZstd, which the shared-memory "
                                             "store reserves for its own compression");
  }
  Probe ProbeOptimistic(std::string_view key, uint64_t hash, Value* out, uint64_t* off_out);
  Status ReadLocked(std::string_view key, uint64_t hash, Value* out, bool peek);
  Status DoWrite(WriteMode mode, std::string_view key, std::string_view data, uint32_t flags,
                 int64_t exp);
  Status DoTouch(std::string_view key, int64_t expires_ms);
  Status DoDelete(std::string_view key);
  Status DoCompareAndSwap(std::string_view key, std::string_view expected, uint32_t expected_flags,
                          const WriteItem* with);
  Status DoIncr(std::string_view key, int64_t delta, int64_t* result);
  Status DoClear();
  Status DoGetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                   std::vector<bool>* found);
  Status ParseCursor(const std::string& cursor, uint64_t* pos) const;
  Status DoList(const ListOptions& opts, ListPage* page);
  // One chunk of a read-only listing (no lock: under the seqlock, retried).
  Status ListChunkReadOnly(uint64_t* pos, size_t limit, const ListOptions& opts, ListPage* page);
  // Walks up to kWalkChunk blocks from arena position *pos (a block start),
  // appending the entries opts asks for to *got until it holds limit;
  // *pos ends after the last block walked. Reads each field once (the
  // read-only listing runs it without the lock). Returns the offset of a
  // block header that cannot be valid, where it stopped, or 0.
  uint64_t ListChunk(uint64_t* pos, size_t limit, const ListOptions& opts, int64_t now,
                     std::vector<EntryInfo>* got, uint64_t* scanned) const;
  Status DoGetStats(Stats* out);
  Status DoPurgeExpired(uint64_t* removed);

  // --- with the mutex held -------------------------------------------------
  // Finds the entry for key; *link receives the slot that points at it.
  // Returns 0 if absent; Damage if the chain is broken.
  uint64_t FindLocked(std::string_view key, uint64_t hash, uint64_t** link);
  // FindLocked for a live, intact entry: 0 (after removing it) for an expired
  // or damaged one, as for none.
  uint64_t FindLiveLocked(std::string_view key, uint64_t hash, int64_t now, uint64_t** link);
  // Takes the lock and calls fn(hash, now, off, link, item) with key's live
  // entry; NotFound without calling it when there is none.
  template <typename Fn>
  Status WithLiveLocked(std::string_view key, Fn&& fn) {
    uint64_t hash = Hash(key);
    return Locking([&]() -> Status {
      int64_t now = NowMs();
      uint64_t* link = nullptr;
      uint64_t off = FindLiveLocked(key, hash, now, &link);
      if (off == 0) return Status::NotFound();
      return fn(hash, now, off, link, At<Item>(off));
    });
  }
  // An entry's value bytes.
  std::string_view ValueOf(const Item* it) const {
    return {reinterpret_cast<const char*>(it) + kItemHeader + it->key_len, it->val_len};
  }
  void UnlinkFromBucket(uint64_t off);
  void SieveRemove(uint64_t off);
  void SievePushHead(uint64_t off);
  // Unlinks an entry from index and list and frees its block.
  void Remove(uint64_t off, uint64_t* link);
  uint64_t AllocBlock(uint32_t order);
  void FreeBlockAt(uint64_t off, uint32_t order);
  void ListRemoveFree(uint64_t off, uint32_t order);
  // Makes the block at off a free block of this order, first on its list.
  void PushFree(uint64_t off, uint32_t order);
  // Allocates, evicting with SIEVE until there is room.
  uint64_t Allocate(uint32_t order);
  bool EvictOne(int64_t now);
  // Expired entries go before live ones: when room is needed and some entry
  // may have expired (next_expiry_ms has passed), one pass over the SIEVE
  // list removes every expired entry and recomputes next_expiry_ms. At most
  // one such pass a second (kSweepIntervalMs), so a region whose entries
  // expire continuously pays O(entries) at most once a second, not per set.
  // Returns the number removed.
  uint64_t SweepExpired(int64_t now);
  void NoteExpiry(int64_t exp) {
    if (exp != kNever && (h_->next_expiry_ms == 0 || exp < h_->next_expiry_ms))
      h_->next_expiry_ms = exp;
  }
  void Cull(int64_t now);
  uint64_t Insert(std::string_view key, uint64_t hash, std::string_view data, uint32_t flags,
                  int64_t exp, int64_t now);
  // Rebuilds index, lists and counters from the block headers, dropping
  // entries whose checksum fails; resets the arena if the headers
  // themselves are broken.
  void Rebuild();
  bool RebuildFromBlocks();
  // Offset of the first block at or after arena position `pos` (relative).
  uint64_t BlockAtOrAfter(uint64_t pos) const;
  // A walk of the arena (doing: "listing", "purging") met a block header at
  // off that cannot be valid: logs, rebuilds, and says to run it again.
  Status RebuiltAfterWalk(uint64_t off, const char* doing, const char* again);

  std::unique_ptr<shm::Segment> seg_;
  char* b_;
  Header* h_;
  const shm::Geometry g_;  // checked at open; the header's copy is never trusted
  const uint64_t max_item_;
  const uint64_t size_;
  const std::string path_;
  uint64_t max_entries_;
  uint32_t cull_frequency_;
  const bool read_only_;
  const int64_t lock_timeout_ms_;
  const uint64_t compress_min_;  // OPTIONS COMPRESS_MIN_SIZE, 0 = never compress
  const int compress_level_;     // OPTIONS COMPRESS_LEVEL
  std::atomic<bool> dead_{false};
  std::mutex break_mu_;  // see BreakLock
  std::atomic<int64_t> truncated_to_{-1};  // the size found when dead_ was set
  std::atomic<int64_t> last_size_check_ms_{0};
  ProcessEvents own_events_;  // Count's, when the mapping is read-only
};

}  // namespace regioncache::shm
