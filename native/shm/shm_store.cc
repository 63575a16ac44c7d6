// The shared-memory store. Design in brief (details in LAYOUT.md):
//  - a buddy allocator over one arena of blocks, with a hash index of chained
//    entries and one SIEVE list over all entries for eviction;
//  - writers serialise on one robust, process-shared mutex; readers take no
//    lock: they validate every offset they follow and retry if the seqlock
//    moved, falling back to the mutex after a few tries;
//  - block headers are the truth: the index, free lists and SIEVE list can be
//    rebuilt from them, which is what happens when a process dies holding
//    the mutex (EOWNERDEAD) or a damaged structure is detected;
//  - nothing read from the segment is trusted: the geometry is the copy
//    checked at open, every offset, length and link is checked against it
//    before use (a failed check in a writer throws Damage, caught where the
//    lock was taken, which rebuilds), values carry an XXH3 checksum, a lock
//    held too long is broken, and a SIGBUS from a segment truncated under
//    us is caught in a scoped way (BusGuard) and makes the store refuse.
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <xxhash.h>
#if defined(__x86_64__)
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>  // libxxhash's run-time choice of SSE2/AVX2/AVX-512
#endif

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "regioncache/blocking.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/glob.h"
#include "regioncache/log.h"
#include "regioncache/options.h"
#include "regioncache/shm_store.h"
#include "shm/shm_layout.h"
#include "shm/shm_segment.h"

namespace regioncache {
namespace {

using shm::FreeBlock;
using shm::Header;
using shm::Item;
using shm::kItemHeader;
using shm::kStateFree;
using shm::kStateLive;
using shm::kStateWriting;

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

// ---- SIGBUS from a segment truncated under this process --------------------
// Every public call that touches the mapping runs inside a BusGuard: a
// sigsetjmp point plus the mapping's bounds in a thread-local pointer. The
// process-wide handler jumps back to it only for a fault the kernel raised
// (si_code > 0) at an address inside the guarded mapping, on the thread that
// set the guard; any other SIGBUS goes to the handler that was there before
// (or the default action, which kills as it always did). The jump skips the
// frames between the guard and the fault: they only read or write the
// segment and, at worst, leave a std::string's buffer allocated. The store
// then refuses every call (it never touches the mapping again).
struct BusGuard {
  sigjmp_buf jb;
  const char* lo;
  const char* hi;
};
// (Default TLS model: initial-exec cannot be used in a dlopen'ed module. A
// thread that faults inside the store has set t_bus_guard in normal context
// first, so its TLS block exists when the handler reads it.)
thread_local BusGuard* t_bus_guard = nullptr;
struct sigaction g_prev_bus;

void OnSigbus(int sig, siginfo_t* si, void* ctx) {
  BusGuard* g = t_bus_guard;
  const char* a = static_cast<const char*>(si->si_addr);
  if (g != nullptr && si->si_code > 0 && a >= g->lo && a < g->hi) {
    t_bus_guard = nullptr;
    siglongjmp(g->jb, 1);
  }
  if (g_prev_bus.sa_flags & SA_SIGINFO) {
    if (g_prev_bus.sa_sigaction) g_prev_bus.sa_sigaction(sig, si, ctx);
    return;
  }
  if (g_prev_bus.sa_handler != SIG_DFL && g_prev_bus.sa_handler != SIG_IGN) {
    g_prev_bus.sa_handler(sig);
    return;
  }
  // The default action: restore it; a fault repeats on return and kills.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGBUS, &dfl, nullptr);
  if (si->si_code <= 0) raise(sig);
}

void InstallSigbusHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = OnSigbus;
    // NODEFER: the handler leaves by siglongjmp, which does not restore the
    // signal mask; SIGBUS must not stay blocked afterwards.
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_prev_bus);
  });
}

class ShmStore final : public Store {
 public:
  ShmStore(std::string region, std::string location, std::unique_ptr<shm::Segment> seg,
           uint64_t max_entries, uint32_t cull_frequency, bool read_only, int64_t lock_timeout_ms)
      : Store(std::move(region), std::move(location)),
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
        lock_timeout_ms_(lock_timeout_ms) {}

  Status Get(std::string_view key, Value* out) override {
    return Guarded([&] { return Read(key, out, false); });
  }
  Status Peek(std::string_view key, Value* out) override {
    return Guarded([&] { return Read(key, out, true); });
  }
  Status Set(std::string_view key, std::string_view data, uint32_t flags, int64_t exp) override {
    return Guarded([&] { return Write(key, data, flags, exp, Mode::kSet); });
  }
  Status Add(std::string_view key, std::string_view data, uint32_t flags, int64_t exp) override {
    return Guarded([&] { return Write(key, data, flags, exp, Mode::kAdd); });
  }
  Status Replace(std::string_view key, std::string_view data, uint32_t flags,
                 int64_t exp) override {
    return Guarded([&] { return Write(key, data, flags, exp, Mode::kReplace); });
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
  Status Clear() override {
    return Guarded([&] { return DoClear(); });
  }
  Status GetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                 std::vector<bool>* found) override {
    return Guarded([&] { return DoGetMany(keys, values, found); });
  }

  Status List(const ListOptions& opts, ListPage* page) override {
    return Guarded([&] { return read_only_ ? ListReadOnly(opts, page) : DoList(opts, page); });
  }
  Status GetStats(Stats* out) override {
    return Guarded([&] { return DoGetStats(out); });
  }
  Status PurgeExpired(uint64_t* removed) override {
    return Guarded([&] { return DoPurgeExpired(removed); });
  }

  std::string_view kind() const override { return "shm"; }
  bool MayBlock() const override { return false; }
  uint64_t MaxItemSize() const override { return max_item_; }

 private:
  enum class Mode { kSet, kAdd, kReplace };
  enum class Probe { kHit, kMiss, kExpired, kRetry, kBadCheck };

  // Runs f with a SIGBUS recovery point (see BusGuard). Nested guards (a
  // guarded call made by another) keep the outer one's state on return.
  template <class F>
  Status Guarded(F&& f) {
    if (dead_.load(std::memory_order_relaxed)) return DeadStatus();
    BusGuard g;
    g.lo = b_;
    g.hi = b_ + size_;
    BusGuard* const outer = t_bus_guard;
    if (sigsetjmp(g.jb, 0) != 0) {
      t_bus_guard = outer;
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
    t_bus_guard = &g;
    Status s = f();
    t_bus_guard = outer;
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
  static uint64_t BlockSize(uint32_t order) { return uint64_t(1) << order; }
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
  Probe ProbeOptimistic(std::string_view key, uint64_t hash, Value* out, uint64_t* off_out);
  Status ReadLocked(std::string_view key, uint64_t hash, Value* out, bool peek);
  Status Write(std::string_view key, std::string_view data, uint32_t flags, int64_t exp, Mode m);
  Status TooLargeError(std::string_view key, uint64_t val_len) const;
  Status DoTouch(std::string_view key, int64_t expires_ms);
  Status DoDelete(std::string_view key);
  Status DoIncr(std::string_view key, int64_t delta, int64_t* result);
  Status DoClear();
  Status DoGetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                   std::vector<bool>* found);
  Status ParseCursor(const std::string& cursor, uint64_t* pos) const;
  Status DoList(const ListOptions& opts, ListPage* page);
  Status ListReadOnly(const ListOptions& opts, ListPage* page);
  Status DoGetStats(Stats* out);
  Status DoPurgeExpired(uint64_t* removed);

  // --- with the mutex held -------------------------------------------------
  // Finds the entry for key; *link receives the slot that points at it.
  // Returns 0 if absent; Damage if the chain is broken.
  uint64_t FindLocked(std::string_view key, uint64_t hash, uint64_t** link);
  void UnlinkFromBucket(uint64_t off);
  void SieveRemove(uint64_t off);
  void SievePushHead(uint64_t off);
  // Unlinks an entry from index and list and frees its block.
  void Remove(uint64_t off, uint64_t* link);
  uint64_t AllocBlock(uint32_t order);
  void FreeBlockAt(uint64_t off, uint32_t order);
  void ListRemoveFree(uint64_t off, uint32_t order);
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
  std::atomic<bool> dead_{false};
  std::mutex break_mu_;  // see BreakLock
  std::atomic<int64_t> truncated_to_{-1};  // the size found when dead_ was set
  std::atomic<int64_t> last_size_check_ms_{0};
};

// ---------------------------------------------------------------- locking --

int ShmStore::WaitForLock() {
  pthread_mutex_t* m = &h_->mutex;
  BlockingSection wait;  // lets other Python threads run while we wait
  for (int round = 0; round < 3; ++round) {
    uint64_t epoch = __atomic_load_n(&h_->lock_epoch, __ATOMIC_ACQUIRE);
    timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    int64_t ns = deadline.tv_nsec + (lock_timeout_ms_ % 1000) * 1000000;
    deadline.tv_sec += lock_timeout_ms_ / 1000 + ns / 1000000000;
    deadline.tv_nsec = ns % 1000000000;
    int rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &deadline);
    if (rc == 0 || rc == EOWNERDEAD) return rc;
    // Held beyond the bound (a live thread id planted in the lock word, a
    // holder stopped or stuck), or a lock word that is not a lock at all.
    rc = BreakLock(epoch);
    if (rc >= 0) return rc;
    // Someone else broke it while we waited: wait for the new holder.
  }
  return ETIMEDOUT;
}

int ShmStore::BreakLock(uint64_t epoch_seen) {
  pthread_mutex_t* m = &h_->mutex;
  // Breakers serialise on the segment's flock (across processes; threads of
  // one process share the descriptor, so break_mu_ orders them), and a
  // breaker that finds the epoch moved knows the lock it timed out on is
  // gone already.
  std::lock_guard<std::mutex> local(break_mu_);
  shm::FlockHold fl(seg_->fd());
  int rc = pthread_mutex_trylock(m);
  if (rc == 0 || rc == EOWNERDEAD) return rc;
  if (__atomic_load_n(&h_->lock_epoch, __ATOMIC_ACQUIRE) != epoch_seen) return -1;
  std::memset(static_cast<void*>(m), 0, sizeof *m);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  rc = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) return rc;
  rc = pthread_mutex_lock(m);
  if (rc != 0) return rc;
  __atomic_store_n(&h_->lock_epoch, epoch_seen + 1, __ATOMIC_RELEASE);
  Log(LogLevel::kWarning, "the writers' lock of " + path_ + " was held for more than " +
                              std::to_string(lock_timeout_ms_) +
                              " ms (a stuck or foreign holder): broken, index rebuilt");
  // Whatever the holder was doing is unknown: rebuild as after a death.
  return EOWNERDEAD;
}

bool ShmStore::CheckSize() {
  // At most every kSizeCheckIntervalMs per store, under the lock: a
  // truncation is found here on the slow paths; between checks, the
  // SIGBUS guard catches it.
  int64_t now = NowMs();
  int64_t last = last_size_check_ms_.load(std::memory_order_relaxed);
  if (now >= last && now - last < kSizeCheckIntervalMs) return true;
  last_size_check_ms_.store(now, std::memory_order_relaxed);
  int64_t cur = seg_->CurrentSize();
  if (cur >= 0 && static_cast<uint64_t>(cur) < size_) {
    MarkTruncated();
    return false;
  }
  return true;
}

void ShmStore::CheckHeader() {
  Header* h = h_;
  const shm::Geometry& g = g_;
  if (h->magic == shm::kMagic && h->layout_version == shm::kLayoutVersion &&
      h->header_bytes == shm::kHeaderBytes && h->segment_size == size_ &&
      h->max_item_size == max_item_ && h->min_order == shm::kMinOrder &&
      h->max_order == g.max_order && h->buckets_off == g.buckets_off &&
      h->nbuckets == g.nbuckets && h->visited_off == g.visited_off &&
      h->arena_off == g.arena_off && h->arena_size == g.arena_size) {
    if (h->seq.load(std::memory_order_relaxed) & 1) {
      // Odd with the lock free: damage, or a writer that died mid-change
      // (EOWNERDEAD rebuilt already). Rebuild and make it even.
      Modifying mod(h_);
      Rebuild();
    }
    return;
  }
  Log(LogLevel::kWarning, "damaged header in segment " + path_ +
                              ": geometry restored from this process's copy, index rebuilt");
  Modifying mod(h_);
  seg_->WriteGeometry();
  Rebuild();
}

// ---------------------------------------------------------------- reading --

ShmStore::Probe ShmStore::ProbeOptimistic(std::string_view key, uint64_t hash, Value* out,
                                          uint64_t* off_out) {
  uint64_t s1 = h_->seq.load(std::memory_order_acquire);
  if (s1 & 1) return Probe::kRetry;
  uint64_t off = Ld(Bucket(hash));
  Probe result = Probe::kMiss;
  const uint64_t max_steps = MaxBlocks();
  for (uint64_t steps = 0; off != 0; ++steps) {
    if (!ValidOff(off) || steps > max_steps) return Probe::kRetry;
    const Item* it = At<Item>(off);
    uint64_t ihash = Ld(&it->hash);
    uint32_t klen = Ld(&it->key_len);
    if (ihash == hash && klen == key.size()) {
      uint32_t order = Ld(&it->head.order);
      uint64_t vlen = Ld(&it->val_len);
      if (!ValidBlock(off, order) || !Fits(order, klen, vlen)) return Probe::kRetry;
      const char* p = reinterpret_cast<const char*>(it) + kItemHeader;
      if (std::memcmp(p, key.data(), klen) == 0) {
        int64_t exp = Ld(&it->expires_ms);
        if (exp != 0 && exp <= NowMs()) {
          result = Probe::kExpired;
        } else {
          out->data.assign(p + klen, vlen);
          out->flags = Ld(&it->flags);
          out->expires_ms = exp;
          uint64_t check = Ld(&it->check);
          result = ValueCheck(out->data.data(), vlen, hash, out->flags) == check ? Probe::kHit
                                                                                 : Probe::kBadCheck;
        }
        *off_out = off;
        break;
      }
    }
    off = Ld(&it->hnext);
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (h_->seq.load(std::memory_order_relaxed) != s1) return Probe::kRetry;
  return result;
}

Status ShmStore::Read(std::string_view key, Value* out, bool peek) {
  uint64_t hash = Hash(key);
  const int tries = read_only_ ? kReadOnlyTries : kOptimisticTries;
  Probe p = Probe::kRetry;
  uint64_t off = 0;
  for (int i = 0; i < tries; ++i) {
    p = ProbeOptimistic(key, hash, out, &off);
    if (p != Probe::kRetry) break;
    sched_yield();
  }
  if (read_only_) peek = true;  // no visited bit, no counters: the mapping is read-only
  switch (p) {
    case Probe::kHit:
      if (!peek) {
        // SIEVE's only write on a hit, and only when the bit is clear. The
        // map is separate from the blocks: a late write for a block freed
        // meanwhile marks a stale bit, never someone else's data.
        uint8_t* v = VisitedByte(off);
        if (Ld(v) == 0) __atomic_store_n(v, uint8_t(1), __ATOMIC_RELAXED);
        Slot().hits.fetch_add(1, std::memory_order_relaxed);
      }
      return Status::OK();
    case Probe::kMiss:
      if (!peek) Slot().misses.fetch_add(1, std::memory_order_relaxed);
      return Status::NotFound();
    case Probe::kExpired:
      if (read_only_) return Status::NotFound();
      break;  // reclaim it under the lock
    case Probe::kBadCheck:
      if (read_only_) {
        Log(LogLevel::kWarning, "entry at offset " + std::to_string(off) + " of " + path_ +
                                    " fails its checksum: a miss (read-only: left as it is)");
        return Status::NotFound();
      }
      break;  // confirmed and removed under the lock
    case Probe::kRetry:
      if (read_only_)
        return Status::Corruption(Where() + "segment " + path_ +
                                  " stays inconsistent (a writer died mid-change, or the index "
                                  "is damaged); opened read-only, so it is left for a writable "
                                  "session to repair");
      break;
  }
  return ReadLocked(key, hash, out, peek);
}

Status ShmStore::ReadLocked(std::string_view key, uint64_t hash, Value* out, bool peek) {
  return Locking([&]() -> Status {
    uint64_t* link = nullptr;
    uint64_t off = FindLocked(key, hash, &link);
    if (off != 0) {
      Item* it = At<Item>(off);
      int64_t now = NowMs();
      if (IsExpired(it->expires_ms, now)) {
        Modifying mod(h_);
        Remove(off, link);
        Slot().expirations.fetch_add(1, std::memory_order_relaxed);
      } else if (!CheckOk(it)) {
        Log(LogLevel::kWarning, "entry at offset " + std::to_string(off) + " of " + path_ +
                                    " failed its checksum: removed, a miss");
        Modifying mod(h_);
        Remove(off, link);
      } else {
        out->data.assign(reinterpret_cast<const char*>(it) + kItemHeader + it->key_len,
                         it->val_len);
        out->flags = it->flags;
        out->expires_ms = it->expires_ms;
        if (!peek) {
          __atomic_store_n(VisitedByte(off), uint8_t(1), __ATOMIC_RELAXED);
          Slot().hits.fetch_add(1, std::memory_order_relaxed);
        }
        return Status::OK();
      }
    }
    if (!peek) Slot().misses.fetch_add(1, std::memory_order_relaxed);
    return Status::NotFound();
  });
}

Status ShmStore::DoGetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                           std::vector<bool>* found) {
  values->resize(keys.size());
  found->assign(keys.size(), false);
  for (size_t i = 0; i < keys.size(); ++i) {
    Status s = Read(keys[i], &(*values)[i], false);
    if (s.ok()) (*found)[i] = true;
    else if (!s.IsNotFound()) return s;
  }
  return Status::OK();
}

// ---------------------------------------------------------------- writing --

Status ShmStore::TooLargeError(std::string_view key, uint64_t val_len) const {
  return Status::TooLarge(Where() + "value of " + std::to_string(val_len) + " bytes (key of " +
                          std::to_string(key.size()) + " bytes) exceeds the maximum item size of " +
                          std::to_string(max_item_) +
                          " bytes (OPTIONS MAX_ITEM_SIZE); nothing was stored");
}

Status ShmStore::Write(std::string_view key, std::string_view data, uint32_t flags, int64_t exp,
                       Mode mode) {
  if (key.size() + data.size() > max_item_) return TooLargeError(key, data.size());
  uint64_t hash = Hash(key);
  return Locking([&]() -> Status {
    int64_t now = NowMs();
    uint64_t* link = nullptr;
    uint64_t off = FindLocked(key, hash, &link);
    bool live = off != 0 && !IsExpired(At<Item>(off)->expires_ms, now);
    if (mode == Mode::kAdd && live) return Status::NotStored();
    if (mode == Mode::kReplace && !live) return Status::NotStored();
    Modifying mod(h_);
    if (off != 0) {
      if (!live) Slot().expirations.fetch_add(1, std::memory_order_relaxed);
      Remove(off, link);
    } else if (max_entries_ != 0 && h_->entries >= max_entries_) {
      Cull(now);
    }
    Insert(key, hash, data, flags, exp, now);
    Slot().sets.fetch_add(1, std::memory_order_relaxed);
    return Status::OK();
  });
}

uint64_t ShmStore::Insert(std::string_view key, uint64_t hash, std::string_view data,
                          uint32_t flags, int64_t exp, int64_t now) {
  uint32_t order = OrderFor(kItemHeader + key.size() + data.size());
  uint64_t off = Allocate(order);
  Item* it = At<Item>(off);
  // The block is WRITING (AllocBlock) until the last step: recovery treats
  // it as free if this process dies before then.
  it->flags = flags;
  it->key_len = static_cast<uint32_t>(key.size());
  it->val_len = data.size();
  it->hash = hash;
  it->expires_ms = exp;
  NoteExpiry(exp);
  it->stored_ms = now;
  it->seqno = ++h_->item_seqno;
  char* p = reinterpret_cast<char*>(it) + kItemHeader;
  std::memcpy(p, key.data(), key.size());
  if (!data.empty()) std::memcpy(p + key.size(), data.data(), data.size());
  it->check = ValueCheck(data.data(), data.size(), hash, flags);
  __atomic_store_n(VisitedByte(off), uint8_t(0), __ATOMIC_RELAXED);
  uint64_t* bucket = Bucket(hash);
  uint64_t first = *bucket;
  if (first != 0) LiveAt(first, "bucket head is not an entry");
  SievePushHead(off);
  it->hnext = first;
  *bucket = off;
  h_->entries++;
  it->head.state = kStateLive;
  return off;
}

Status ShmStore::DoTouch(std::string_view key, int64_t expires_ms) {
  uint64_t hash = Hash(key);
  return Locking([&]() -> Status {
    uint64_t* link = nullptr;
    uint64_t off = FindLocked(key, hash, &link);
    if (off == 0) return Status::NotFound();
    Modifying mod(h_);
    Item* it = At<Item>(off);
    if (IsExpired(it->expires_ms, NowMs())) {
      Remove(off, link);
      Slot().expirations.fetch_add(1, std::memory_order_relaxed);
      return Status::NotFound();
    }
    it->expires_ms = expires_ms;
    NoteExpiry(expires_ms);
    return Status::OK();
  });
}

Status ShmStore::DoDelete(std::string_view key) {
  uint64_t hash = Hash(key);
  return Locking([&]() -> Status {
    uint64_t* link = nullptr;
    uint64_t off = FindLocked(key, hash, &link);
    if (off == 0) return Status::NotFound();
    bool live = !IsExpired(At<Item>(off)->expires_ms, NowMs());
    Modifying mod(h_);
    Remove(off, link);
    if (!live) Slot().expirations.fetch_add(1, std::memory_order_relaxed);
    return live ? Status::OK() : Status::NotFound();
  });
}

Status ShmStore::DoIncr(std::string_view key, int64_t delta, int64_t* result) {
  uint64_t hash = Hash(key);
  return Locking([&]() -> Status {
    int64_t now = NowMs();
    uint64_t* link = nullptr;
    uint64_t off = FindLocked(key, hash, &link);
    if (off == 0) return Status::NotFound();
    Item* it = At<Item>(off);
    if (IsExpired(it->expires_ms, now) || !CheckOk(it)) {
      Modifying mod(h_);
      bool expired = IsExpired(it->expires_ms, now);
      Remove(off, link);
      if (expired) Slot().expirations.fetch_add(1, std::memory_order_relaxed);
      else Log(LogLevel::kWarning, "entry at offset " + std::to_string(off) + " of " + path_ +
                                       " failed its checksum: removed, a miss");
      return Status::NotFound();
    }
    if (Encoding(it->flags) != kEncInt) return Status::NotANumber();
    std::string_view text(reinterpret_cast<const char*>(it) + kItemHeader + it->key_len,
                          it->val_len);
    int64_t cur = 0;
    if (!ParseInt64(text, &cur)) {
      // Decimal but beyond int64 is out of range; anything else is not a number.
      bool digits = !text.empty();
      for (size_t i = 0; i < text.size(); ++i)
        if (!(std::isdigit(static_cast<unsigned char>(text[i])) || (i == 0 && text[i] == '-')))
          digits = false;
      return digits ? Status::OutOfRange() : Status::NotANumber();
    }
    int64_t next = 0;
    if (__builtin_add_overflow(cur, delta, &next)) return Status::OutOfRange();
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, next);
    (void)ec;
    std::string_view nt(buf, static_cast<size_t>(end - buf));
    Modifying mod(h_);
    uint64_t room = BlockSize(it->head.order) - kItemHeader - it->key_len;
    if (nt.size() <= room) {
      std::memcpy(reinterpret_cast<char*>(it) + kItemHeader + it->key_len, nt.data(), nt.size());
      it->val_len = nt.size();
      it->check = ValueCheck(nt.data(), nt.size(), hash, it->flags);
    } else {
      int64_t exp = it->expires_ms;
      uint32_t flags = it->flags;
      Remove(off, link);
      Insert(key, hash, nt, flags, exp, now);
    }
    *result = next;
    return Status::OK();
  });
}

Status ShmStore::DoClear() {
  return Locking([&]() -> Status {
    Modifying mod(h_);
    seg_->ResetArena();
    return Status::OK();
  });
}

// ------------------------------------------------------ index and lists --

uint64_t ShmStore::FindLocked(std::string_view key, uint64_t hash, uint64_t** link) {
  uint64_t* slot = Bucket(hash);
  const uint64_t max_steps = MaxBlocks();
  for (uint64_t steps = 0; *slot != 0; ++steps) {
    uint64_t off = *slot;
    if (steps > max_steps) Bad("hash chain loops", off);
    Item* it = LiveAt(off, "hash chain leads to a block that is not a live entry");
    if (it->hash == hash && it->key_len == key.size() &&
        std::memcmp(reinterpret_cast<char*>(it) + kItemHeader, key.data(), key.size()) == 0) {
      *link = slot;
      return off;
    }
    slot = &it->hnext;
  }
  return 0;
}

void ShmStore::UnlinkFromBucket(uint64_t off) {
  Item* it = At<Item>(off);
  uint64_t* slot = Bucket(it->hash);
  const uint64_t max_steps = MaxBlocks();
  for (uint64_t steps = 0; *slot != 0 && steps <= max_steps; ++steps) {
    if (*slot == off) {
      *slot = it->hnext;
      return;
    }
    slot = &LiveAt(*slot, "hash chain leads to a block that is not a live entry")->hnext;
  }
  Bad("entry missing from its hash chain", off);
}

void ShmStore::SievePushHead(uint64_t off) {
  Item* it = At<Item>(off);
  uint64_t head = h_->sieve_head;
  if (head) LiveAt(head, "SIEVE list head is not a live entry")->sprev = off;
  else if (h_->sieve_tail) Bad("SIEVE list has a tail but no head", h_->sieve_tail);
  it->sprev = 0;
  it->snext = head;
  h_->sieve_head = off;
  if (!h_->sieve_tail) h_->sieve_tail = off;
}

void ShmStore::SieveRemove(uint64_t off) {
  Item* it = At<Item>(off);
  uint64_t prev = it->sprev, next = it->snext;
  Item* p = prev ? LiveAt(prev, "SIEVE link is not a live entry") : nullptr;
  Item* n = next ? LiveAt(next, "SIEVE link is not a live entry") : nullptr;
  if ((p && p->snext != off) || (!p && h_->sieve_head != off) || (n && n->sprev != off) ||
      (!n && h_->sieve_tail != off))
    Bad("SIEVE list links disagree", off);
  if (h_->sieve_hand == off) h_->sieve_hand = prev;
  if (p) p->snext = next;
  else h_->sieve_head = next;
  if (n) n->sprev = prev;
  else h_->sieve_tail = prev;
  it->sprev = it->snext = 0;
}

void ShmStore::Remove(uint64_t off, uint64_t* link) {
  Item* it = LiveAt(off, "removing a block that is not a live entry");
  if (link && *link == off) *link = it->hnext;
  else UnlinkFromBucket(off);
  SieveRemove(off);
  h_->entries--;
  uint32_t order = it->head.order;
  it->head.state = kStateWriting;  // out of the index, not yet on a free list
  FreeBlockAt(off, order);
}

void ShmStore::ListRemoveFree(uint64_t off, uint32_t order) {
  FreeBlock* fb = FreeAt(off, order, "free list holds a block that is not free");
  uint64_t prev = fb->prev, next = fb->next;
  FreeBlock* p = prev ? FreeAt(prev, order, "free list link is not a free block") : nullptr;
  FreeBlock* n = next ? FreeAt(next, order, "free list link is not a free block") : nullptr;
  if ((p && p->next != off) || (!p && h_->free_heads[order] != off) || (n && n->prev != off))
    Bad("free list links disagree", off);
  if (p) p->next = next;
  else h_->free_heads[order] = next;
  if (n) n->prev = prev;
}

uint64_t ShmStore::AllocBlock(uint32_t order) {
  uint32_t k = order;
  while (k <= g_.max_order && h_->free_heads[k] == 0) ++k;
  if (k > g_.max_order) return 0;
  uint64_t off = h_->free_heads[k];
  ListRemoveFree(off, k);
  // Split down to the wanted order. The upper half's header is written
  // before the lower half shrinks, so a walk of the arena is valid at every
  // step even if this process dies here.
  while (k > order) {
    --k;
    uint64_t half = off + BlockSize(k);
    uint64_t next = h_->free_heads[k];
    if (next) FreeAt(next, k, "free list head is not a free block")->prev = half;
    FreeBlock* hb = At<FreeBlock>(half);
    hb->head.state = kStateFree;
    hb->head.order = k;
    hb->prev = 0;
    hb->next = next;
    h_->free_heads[k] = half;
    At<FreeBlock>(off)->head.order = k;
  }
  Item* it = At<Item>(off);
  it->head.state = kStateWriting;
  it->head.order = order;
  h_->bytes_used += BlockSize(order);
  return off;
}

void ShmStore::FreeBlockAt(uint64_t off, uint32_t order) {
  h_->bytes_used -= BlockSize(order);
  // Coalesce with the buddy while it is free and whole.
  while (order < g_.max_order) {
    uint64_t rel = off - g_.arena_off;
    uint64_t buddy_rel = rel ^ BlockSize(order);
    if (buddy_rel + BlockSize(order) > g_.arena_size) break;
    uint64_t buddy = g_.arena_off + buddy_rel;
    FreeBlock* bb = At<FreeBlock>(buddy);
    if (bb->head.state != kStateFree || bb->head.order != order) break;
    ListRemoveFree(buddy, order);
    off = std::min(off, buddy);
    ++order;
    At<FreeBlock>(off)->head.order = order;  // the merged block's header, written last
  }
  uint64_t next = h_->free_heads[order];
  if (next) FreeAt(next, order, "free list head is not a free block")->prev = off;
  FreeBlock* fb = At<FreeBlock>(off);
  fb->head.state = kStateFree;
  fb->head.order = order;
  fb->prev = 0;
  fb->next = next;
  h_->free_heads[order] = off;
}

bool ShmStore::EvictOne(int64_t now) {
  if (h_->entries == 0 || h_->sieve_tail == 0) return false;
  uint64_t cur = h_->sieve_hand ? h_->sieve_hand : h_->sieve_tail;
  // SIEVE: the hand moves from old to new; a visited entry gets its bit
  // cleared and is passed over, the first unvisited (or expired) one goes.
  // Two full sweeps always find one: the first clears every bit.
  const uint64_t bound = 2 * std::min(h_->entries, MaxBlocks()) + 2;
  for (uint64_t steps = 0; steps <= bound; ++steps) {
    Item* it = LiveAt(cur, "SIEVE list leads to a block that is not a live entry");
    bool expired = IsExpired(it->expires_ms, now);
    uint8_t* v = VisitedByte(cur);
    if (!expired && *v) {
      __atomic_store_n(v, uint8_t(0), __ATOMIC_RELAXED);
      cur = it->sprev ? it->sprev : h_->sieve_tail;
      continue;
    }
    h_->sieve_hand = it->sprev;
    Remove(cur, nullptr);
    if (expired) Slot().expirations.fetch_add(1, std::memory_order_relaxed);
    else Slot().evictions.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  Bad("SIEVE list longer than the entry count", cur);
}

uint64_t ShmStore::SweepExpired(int64_t now) {
  if (h_->next_expiry_ms == 0 || now < h_->next_expiry_ms ||
      (h_->last_sweep_ms != 0 && now - h_->last_sweep_ms < kSweepIntervalMs && now >= h_->last_sweep_ms))
    return 0;
  h_->last_sweep_ms = now;
  int64_t next = 0;
  uint64_t removed = 0;
  uint64_t cur = h_->sieve_tail;
  const uint64_t bound = MaxBlocks() + 1;
  for (uint64_t steps = 0; cur != 0; ++steps) {
    if (steps > bound) Bad("SIEVE list loops", cur);
    Item* it = LiveAt(cur, "SIEVE list leads to a block that is not a live entry");
    uint64_t newer = it->sprev;
    if (IsExpired(it->expires_ms, now)) {
      Remove(cur, nullptr);
      Slot().expirations.fetch_add(1, std::memory_order_relaxed);
      ++removed;
    } else if (it->expires_ms != kNever && (next == 0 || it->expires_ms < next)) {
      next = it->expires_ms;
    }
    cur = newer;
  }
  h_->next_expiry_ms = next;
  return removed;
}

void ShmStore::Cull(int64_t now) {
  // Django's MAX_ENTRIES: expired entries leave first; cull only if the
  // region is still at its bound without them.
  SweepExpired(now);
  if (h_->entries < max_entries_) return;
  if (cull_frequency_ == 0) {
    uint64_t n = h_->entries;
    seg_->ResetArena();
    Slot().evictions.fetch_add(n, std::memory_order_relaxed);
    return;
  }
  uint64_t n = h_->entries / cull_frequency_;
  for (uint64_t i = 0; i < n; ++i)
    if (!EvictOne(now)) break;
}

uint64_t ShmStore::Allocate(uint32_t order) {
  int64_t now = NowMs();
  for (uint64_t rounds = 0;; ++rounds) {
    uint64_t off = AllocBlock(order);
    if (off) return off;
    if (SweepExpired(now) != 0) continue;
    if (rounds > MaxBlocks() || !EvictOne(now)) break;
  }
  // Nothing left to evict yet no block: the lists disagree with the blocks.
  Bad("no block can be allocated with nothing left to evict", 0);
}

// --------------------------------------------------------------- recovery --

void ShmStore::Rebuild() {
  // The caller holds the mutex. Readers see an odd seq until we finish.
  uint64_t s = h_->seq.load(std::memory_order_relaxed);
  h_->seq.store(s | 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  bool ok = false;
  try {
    ok = RebuildFromBlocks();
  } catch (const Damage&) {
    ok = false;
  }
  if (!ok) {
    Log(LogLevel::kError, "block headers of segment " + path_ +
                              " are damaged: every entry dropped, the arena starts afresh");
    ResetArena();
  }
  std::memset(b_ + g_.visited_off, 0, g_.arena_size >> shm::kMinOrder);
  std::atomic_thread_fence(std::memory_order_release);
  h_->seq.store((s | 1) + 1, std::memory_order_release);
}

bool ShmStore::RebuildFromBlocks() {
  std::memset(b_ + g_.buckets_off, 0, g_.nbuckets * 8);
  for (auto& f : h_->free_heads) f = 0;
  h_->sieve_head = h_->sieve_tail = h_->sieve_hand = 0;
  h_->entries = 0;
  h_->next_expiry_ms = 1;  // not known: the next sweep recomputes it
  h_->last_sweep_ms = 0;
  h_->bytes_used = 0;

  // Pass 1: walk the blocks; keep committed entries whose checksum holds,
  // set everything else aside. A block header that cannot be valid means
  // the arena itself is damaged: the caller starts it afresh.
  std::vector<std::pair<uint64_t, uint32_t>> spare;
  uint64_t pos = 0;
  while (pos < g_.arena_size) {
    uint64_t off = g_.arena_off + pos;
    auto* bh = At<shm::BlockHead>(off);
    uint32_t order = bh->order;
    if (!ValidBlock(off, order) ||
        (bh->state != kStateFree && bh->state != kStateWriting && bh->state != kStateLive))
      return false;
    Item* it = At<Item>(off);
    bool keep = bh->state == kStateLive && Fits(order, it->key_len, it->val_len);
    if (keep) {
      std::string_view key(reinterpret_cast<char*>(it) + kItemHeader, it->key_len);
      it->hash = Hash(key);
      keep = CheckOk(it);
    }
    if (keep) {
      std::string_view key(reinterpret_cast<char*>(it) + kItemHeader, it->key_len);
      uint64_t* link = nullptr;
      uint64_t dup = FindLocked(key, it->hash, &link);
      if (dup != 0) {
        // Died between linking a new value and freeing the old: newer wins.
        Item* d = At<Item>(dup);
        if (d->seqno > it->seqno) {
          keep = false;
        } else {
          *link = d->hnext;
          SieveRemove(dup);
          h_->entries--;
          h_->bytes_used -= BlockSize(d->head.order);
          d->head.state = kStateWriting;
          spare.emplace_back(dup, d->head.order);
        }
      }
    }
    if (keep) {
      it->head.state = kStateLive;
      uint64_t* bucket = Bucket(it->hash);
      it->hnext = *bucket;
      *bucket = off;
      SievePushHead(off);
      h_->entries++;
      h_->bytes_used += BlockSize(order);
      if (it->seqno > h_->item_seqno) h_->item_seqno = it->seqno;
    } else {
      bh->state = kStateWriting;
      spare.emplace_back(off, order);
    }
    pos += BlockSize(order);
  }
  // Pass 2: free the spare blocks, coalescing with free neighbours.
  std::sort(spare.begin(), spare.end());
  for (auto [off, order] : spare) {
    h_->bytes_used += BlockSize(order);  // FreeBlockAt subtracts it again
    FreeBlockAt(off, order);
  }
  return true;
}

// ------------------------------------------------------------- inspection --

uint64_t ShmStore::BlockAtOrAfter(uint64_t target) const {
  // Top-level blocks sit where ResetArena carved them and never move; walk
  // from the one holding target to the first block starting at or after it.
  uint64_t pos = 0;
  while (pos < g_.arena_size) {
    uint32_t order = g_.max_order;
    while (order > shm::kMinOrder &&
           ((pos & (BlockSize(order) - 1)) != 0 || pos + BlockSize(order) > g_.arena_size))
      --order;
    if (target < pos + BlockSize(order)) break;
    pos += BlockSize(order);
  }
  while (pos < target && pos < g_.arena_size) {
    uint32_t order = Ld(&At<shm::BlockHead>(g_.arena_off + pos)->order);
    if (!ValidBlock(g_.arena_off + pos, order)) return g_.arena_size;
    pos += BlockSize(order);
  }
  return pos;
}

// A listing cursor is the arena position to resume at, in decimal ("" = 0).
Status ShmStore::ParseCursor(const std::string& cursor, uint64_t* pos) const {
  *pos = 0;
  if (cursor.empty()) return Status::OK();
  auto [p, ec] = std::from_chars(cursor.data(), cursor.data() + cursor.size(), *pos);
  if (ec != std::errc() || p != cursor.data() + cursor.size())
    return Status::InvalidArgument(Where() + "bad listing cursor '" + cursor + "'");
  return Status::OK();
}

Status ShmStore::DoList(const ListOptions& opts, ListPage* page) {
  page->entries.clear();
  page->next_cursor.clear();
  page->scanned = 0;
  uint64_t pos = 0;
  if (Status cs = ParseCursor(opts.cursor, &pos); !cs.ok()) return cs;
  size_t limit = opts.limit ? opts.limit : 1000;
  while (pos < g_.arena_size && page->entries.size() < limit) {
    Status st = Locking([&]() -> Status {
      int64_t now = NowMs();
      pos = BlockAtOrAfter(pos);
      for (uint64_t n = 0; n < kWalkChunk && pos < g_.arena_size && page->entries.size() < limit;
           ++n) {
        uint64_t off = g_.arena_off + pos;
        Item* it = At<Item>(off);
        uint32_t order = it->head.order;
        if (!ValidBlock(off, order)) {
          Log(LogLevel::kWarning, "damaged block header at offset " + std::to_string(off) +
                                      " of " + path_ + " found while listing; index rebuilt");
          Modifying mod(h_);
          Rebuild();
          return Status::Corruption(Where() + "damaged block found while listing " + path_ +
                                    "; the region was rebuilt, list again");
        }
        page->scanned++;
        if (it->head.state == kStateLive && Fits(order, it->key_len, it->val_len)) {
          bool expired = IsExpired(it->expires_ms, now);
          std::string_view key(reinterpret_cast<char*>(it) + kItemHeader, it->key_len);
          if ((!expired || opts.include_expired) &&
              (opts.glob.empty() || GlobMatch(opts.glob, key))) {
            EntryInfo e;
            e.key.assign(key);
            e.value_size = it->val_len;
            e.expires_ms = it->expires_ms;
            e.stored_ms = it->stored_ms;
            e.flags = it->flags;
            page->entries.push_back(std::move(e));
          }
        }
        pos += BlockSize(order);
      }
      return Status::OK();
    });
    if (!st.ok()) return st;
  }
  if (pos < g_.arena_size) page->next_cursor = std::to_string(pos);
  return Status::OK();
}

Status ShmStore::ListReadOnly(const ListOptions& opts, ListPage* page) {
  // No lock (the mapping is read-only): each chunk is read under the
  // seqlock and read again if a writer moved meanwhile. Damage is reported,
  // never repaired.
  page->entries.clear();
  page->next_cursor.clear();
  page->scanned = 0;
  uint64_t pos = 0;
  if (Status cs = ParseCursor(opts.cursor, &pos); !cs.ok()) return cs;
  size_t limit = opts.limit ? opts.limit : 1000;
  while (pos < g_.arena_size && page->entries.size() < limit) {
    bool done = false;
    for (int tries = 0; !done && tries < kReadOnlyTries; ++tries) {
      uint64_t s1 = h_->seq.load(std::memory_order_acquire);
      if (s1 & 1) {
        sched_yield();
        continue;
      }
      std::vector<EntryInfo> got;
      uint64_t scanned = 0;
      uint64_t p = BlockAtOrAfter(pos);
      uint64_t bad = 0;
      int64_t now = NowMs();
      for (uint64_t n = 0; n < kWalkChunk && p < g_.arena_size &&
                           page->entries.size() + got.size() < limit;
           ++n) {
        uint64_t off = g_.arena_off + p;
        const Item* it = At<Item>(off);
        uint32_t order = Ld(&it->head.order);
        if (!ValidBlock(off, order)) {
          bad = off;
          break;
        }
        ++scanned;
        uint32_t klen = Ld(&it->key_len);
        uint64_t vlen = Ld(&it->val_len);
        if (Ld(&it->head.state) == kStateLive && Fits(order, klen, vlen)) {
          int64_t exp = Ld(&it->expires_ms);
          bool expired = IsExpired(exp, now);
          std::string_view key(reinterpret_cast<const char*>(it) + kItemHeader, klen);
          if ((!expired || opts.include_expired) &&
              (opts.glob.empty() || GlobMatch(opts.glob, key))) {
            EntryInfo e;
            e.key.assign(key);
            e.value_size = vlen;
            e.expires_ms = exp;
            e.stored_ms = Ld(&it->stored_ms);
            e.flags = Ld(&it->flags);
            got.push_back(std::move(e));
          }
        }
        p += BlockSize(order);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (h_->seq.load(std::memory_order_relaxed) != s1) {
        sched_yield();
        continue;
      }
      if (bad != 0)
        return Status::Corruption(Where() + "damaged block header at offset " +
                                  std::to_string(bad) + " of " + path_ +
                                  "; opened read-only, so it is left as it is: a writable "
                                  "session repairs it");
      for (auto& e : got) page->entries.push_back(std::move(e));
      page->scanned += scanned;
      pos = p;
      done = true;
    }
    if (!done)
      return Status::Corruption(Where() + "segment " + path_ +
                                " stays inconsistent while listing (a writer died mid-change?); "
                                "opened read-only, so it is left for a writable session");
  }
  if (pos < g_.arena_size) page->next_cursor = std::to_string(pos);
  return Status::OK();
}

Status ShmStore::DoGetStats(Stats* out) {
  *out = Stats{};
  if (read_only_) {
    out->entries = Ld(&h_->entries);
    out->bytes_used = Ld(&h_->bytes_used);
  } else {
    Status st = Locking([&]() -> Status {
      out->entries = h_->entries;
      out->bytes_used = h_->bytes_used;
      return Status::OK();
    });
    if (!st.ok()) return st;
  }
  out->capacity = g_.arena_size;
  for (const auto& s : h_->stats) {
    out->hits += s.hits.load(std::memory_order_relaxed);
    out->misses += s.misses.load(std::memory_order_relaxed);
    out->sets += s.sets.load(std::memory_order_relaxed);
    out->evictions += s.evictions.load(std::memory_order_relaxed);
    out->expirations += s.expirations.load(std::memory_order_relaxed);
  }
  out->extra = {
      {"segment", ShmSegmentName(location())},
      {"segment_size", std::to_string(size_)},
      {"layout_version", std::to_string(shm::kLayoutVersion)},
      {"max_item_size", std::to_string(max_item_)},
      {"index_buckets", std::to_string(g_.nbuckets)},
      {"eviction", "SIEVE"},
      {"recoveries", std::to_string(Ld(&h_->recoveries))},
      {"resets", std::to_string(Ld(&h_->resets))},
      {"created_ms", std::to_string(Ld(&h_->created_ms))},
  };
  if (read_only_) out->extra.emplace_back("mode", "read-only");
  return Status::OK();
}

Status ShmStore::DoPurgeExpired(uint64_t* removed) {
  *removed = 0;
  uint64_t pos = 0;
  while (pos < g_.arena_size) {
    Status st = Locking([&]() -> Status {
      int64_t now = NowMs();
      pos = BlockAtOrAfter(pos);
      Modifying mod(h_);
      for (uint64_t n = 0; n < kWalkChunk && pos < g_.arena_size; ++n) {
        uint64_t off = g_.arena_off + pos;
        Item* it = At<Item>(off);
        uint32_t order = it->head.order;
        if (!ValidBlock(off, order)) {
          Log(LogLevel::kWarning, "damaged block header at offset " + std::to_string(off) +
                                      " of " + path_ + " found while purging; index rebuilt");
          Rebuild();
          return Status::Corruption(Where() + "damaged block found while purging " + path_ +
                                    "; the region was rebuilt, purge again");
        }
        // Freeing may merge this block with an earlier buddy; the next block
        // still starts right after this one's original extent.
        pos += BlockSize(order);
        if (it->head.state == kStateLive && IsExpired(it->expires_ms, now)) {
          Remove(off, nullptr);
          Slot().expirations.fetch_add(1, std::memory_order_relaxed);
          ++*removed;
        }
      }
      return Status::OK();
    });
    if (!st.ok()) return st;
  }
  return Status::OK();
}

}  // namespace

Status OpenShmStore(const StoreSpec& spec, std::unique_ptr<Store>* out) {
  std::string region = spec.region.empty() ? spec.location : spec.region;
  Status s = shm::ValidateRegionName(spec.location);
  if (!s.ok()) {
    return Status::InvalidArgument("region '" + region + "': LOCATION '" + spec.location +
                                   "' is not a valid shared-memory region name (1 to 200 letters, "
                                   "digits, '.', '_' or '-')");
  }
  OptionReader r(region, spec.options);
  shm::SegmentParams p;
  p.region = region;
  p.location = spec.location;
  p.name = ShmSegmentName(spec.location);
  uint64_t max_entries = 0, cull = 3;
  std::string mismatch;
  bool create = true, read_only = false;
  int64_t lock_timeout_ms = kDefaultLockTimeoutMs;
  p.size_given = spec.options.count("SIZE") != 0;
  if (!(s = r.Size("SIZE", kDefaultSize, &p.size)).ok()) return s;
  if (!(s = r.Size("MAX_ITEM_SIZE", kDefaultMaxItem, &p.max_item_size)).ok()) return s;
  if (!(s = r.UInt("MAX_ENTRIES", 0, &max_entries)).ok()) return s;
  if (!(s = r.UInt("CULL_FREQUENCY", 3, &cull)).ok()) return s;
  if (!(s = r.Choice("ON_MISMATCH", {"error", "recreate"}, "error", &mismatch)).ok()) return s;
  if (!(s = r.Bool("CREATE", true, &create)).ok()) return s;
  if (!(s = r.Bool("READ_ONLY", false, &read_only)).ok()) return s;
  if (!(s = r.Millis("LOCK_TIMEOUT", kDefaultLockTimeoutMs, &lock_timeout_ms)).ok()) return s;
  if (!(s = r.CheckAllUsed()).ok()) return s;
  if (p.max_item_size == 0)
    return Status::InvalidArgument("region '" + region + "': option MAX_ITEM_SIZE must be above 0");
  if (cull > 1000000)
    return Status::InvalidArgument("region '" + region + "': option CULL_FREQUENCY=" +
                                   std::to_string(cull) + " is not a sensible fraction");
  if (lock_timeout_ms <= 0)
    return Status::InvalidArgument("region '" + region + "': option LOCK_TIMEOUT must be above 0");
  if (read_only) create = false;
  p.create = create;
  p.read_only = read_only;
  if (create) p.size_given = true;
  p.max_entries = max_entries;
  p.cull_frequency = static_cast<uint32_t>(cull);
  p.recreate_on_mismatch = mismatch == "recreate" && !read_only;
  auto seg = std::make_unique<shm::Segment>();
  s = seg->Open(p);
  if (!s.ok()) return s;
  InstallSigbusHandler();
  *out = std::make_unique<ShmStore>(region, spec.location, std::move(seg), max_entries,
                                    static_cast<uint32_t>(cull), read_only, lock_timeout_ms);
  return Status::OK();
}

}  // namespace regioncache
