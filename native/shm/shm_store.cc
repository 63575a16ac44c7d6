// The shared-memory store. Design in brief (details in LAYOUT.md):
//  - a buddy allocator over one arena of blocks, with a hash index of chained
//    entries and one SIEVE list over all entries for eviction;
//  - writers serialise on one robust, process-shared mutex; readers take no
//    lock: they validate every offset they follow and retry if the seqlock
//    moved, falling back to the mutex after a few tries;
//  - block headers are the truth: the index, free lists and SIEVE list can be
//    rebuilt from them, which is what happens when a process dies holding
//    the mutex (EOWNERDEAD) or a damaged structure is detected.
#include <pthread.h>
#include <sched.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "regioncache/blocking.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/glob.h"
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
constexpr uint64_t kDefaultSize = 64ull << 20;
constexpr uint64_t kDefaultMaxItem = 1ull << 20;
constexpr int64_t kSweepIntervalMs = 1000;  // see SweepExpired
constexpr uint64_t kWalkChunk = 4096;  // blocks examined per lock hold when listing

class ShmStore final : public Store {
 public:
  ShmStore(std::string region, std::string location, std::unique_ptr<shm::Segment> seg,
           uint64_t max_entries, uint32_t cull_frequency)
      : Store(std::move(region), std::move(location)),
        seg_(std::move(seg)),
        b_(seg_->base()),
        h_(seg_->header()),
        max_entries_(max_entries),
        cull_frequency_(cull_frequency) {}

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
  Status GetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                 std::vector<bool>* found) override;

  Status List(const ListOptions& opts, ListPage* page) override;
  Status GetStats(Stats* out) override;
  Status PurgeExpired(uint64_t* removed) override;

  std::string_view kind() const override { return "shm"; }
  bool MayBlock() const override { return false; }
  uint64_t MaxItemSize() const override { return h_->max_item_size; }

 private:
  enum class Mode { kSet, kAdd, kReplace };
  enum class Probe { kHit, kMiss, kExpired, kRetry };

  // Holds the writers' mutex; recovers the segment if the previous holder died.
  class Locked {
   public:
    explicit Locked(ShmStore* s) : s_(s) {
      pthread_mutex_t* m = &s_->h_->mutex;
      int rc = pthread_mutex_trylock(m);
      if (rc == EBUSY) {
        BlockingSection wait;  // lets other Python threads run while we wait
        rc = pthread_mutex_lock(m);
      }
      if (rc == EOWNERDEAD) {
        s_->h_->recoveries++;
        s_->Rebuild();
        pthread_mutex_consistent(m);
        rc = 0;
      }
      if (rc != 0) {
        status_ = Status::Corruption(s_->Where() + "the segment's lock is unusable (" +
                                     ErrnoText(rc) + "); remove the region to reset it");
        return;
      }
      held_ = true;
    }
    ~Locked() {
      if (held_) pthread_mutex_unlock(&s_->h_->mutex);
    }
    const Status& status() const { return status_; }

   private:
    ShmStore* s_;
    bool held_ = false;
    Status status_;
  };

  // Marks the seqlock odd for the duration of a modification.
  class Modifying {
   public:
    explicit Modifying(Header* h) : h_(h), s_(h->seq.load(std::memory_order_relaxed)) {
      h_->seq.store(s_ + 1, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
    }
    ~Modifying() { h_->seq.store(s_ + 2, std::memory_order_release); }

   private:
    Header* h_;
    uint64_t s_;
  };

  template <class T>
  T* At(uint64_t off) const {
    return reinterpret_cast<T*>(b_ + off);
  }
  uint64_t BlockSize(uint32_t order) const { return uint64_t(1) << order; }
  // An offset that can start a block: inside the arena, on a minimum-block boundary.
  bool ValidOff(uint64_t off) const {
    return off >= h_->arena_off && off < h_->arena_off + h_->arena_size &&
           ((off - h_->arena_off) & ((uint64_t(1) << shm::kMinOrder) - 1)) == 0;
  }
  bool ValidBlock(uint64_t off, uint32_t order) const {
    return ValidOff(off) && order >= h_->min_order && order <= h_->max_order &&
           ((off - h_->arena_off) & (BlockSize(order) - 1)) == 0 &&
           off - h_->arena_off + BlockSize(order) <= h_->arena_size;
  }
  uint8_t* VisitedByte(uint64_t off) const {
    return At<uint8_t>(h_->visited_off + ((off - h_->arena_off) >> shm::kMinOrder));
  }
  uint64_t* Bucket(uint64_t hash) const {
    return At<uint64_t>(h_->buckets_off + (hash & (h_->nbuckets - 1)) * 8);
  }
  shm::StatSlot& Slot() const {
    int cpu = sched_getcpu();
    return h_->stats[static_cast<unsigned>(cpu < 0 ? 0 : cpu) % shm::kStatSlots];
  }
  static uint64_t Hash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }
  static uint32_t OrderFor(uint64_t bytes) {
    uint32_t o = shm::kMinOrder;
    while (BlockBytes(o) < bytes) ++o;
    return o;
  }
  static uint64_t BlockBytes(uint32_t o) { return uint64_t(1) << o; }

  Status Read(std::string_view key, Value* out, bool peek);
  Probe ProbeOptimistic(std::string_view key, uint64_t hash, Value* out, uint64_t* off_out);
  Status ReadLocked(std::string_view key, uint64_t hash, Value* out, bool peek);
  Status Write(std::string_view key, std::string_view data, uint32_t flags, int64_t exp, Mode m);
  Status TooLargeError(std::string_view key, uint64_t val_len) const;

  // --- with the mutex held -------------------------------------------------
  // Finds the entry for key; *link receives the slot that points at it.
  // Returns 0 if absent. Sets *broken if the chain is damaged.
  uint64_t FindLocked(std::string_view key, uint64_t hash, uint64_t** link, bool* broken);
  // FindLocked, rebuilding the index once if it is found damaged.
  uint64_t FindOrRepair(std::string_view key, uint64_t hash, uint64_t** link);
  bool UnlinkFromBucket(uint64_t off);
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
  // Rebuilds index, lists and counters from the block headers.
  void Rebuild();
  // Offset of the first block at or after arena position `pos` (relative).
  uint64_t BlockAtOrAfter(uint64_t pos) const;

  std::unique_ptr<shm::Segment> seg_;
  char* b_;
  Header* h_;
  uint64_t max_entries_;
  uint32_t cull_frequency_;
};

// ---------------------------------------------------------------- reading --

ShmStore::Probe ShmStore::ProbeOptimistic(std::string_view key, uint64_t hash, Value* out,
                                          uint64_t* off_out) {
  uint64_t s1 = h_->seq.load(std::memory_order_acquire);
  if (s1 & 1) return Probe::kRetry;
  uint64_t off = Ld(Bucket(hash));
  Probe result = Probe::kMiss;
  for (uint64_t steps = 0; off != 0; ++steps) {
    if (!ValidOff(off) || steps > 1000000) return Probe::kRetry;
    const Item* it = At<Item>(off);
    uint64_t ihash = Ld(&it->hash);
    uint32_t klen = Ld(&it->key_len);
    if (ihash == hash && klen == key.size()) {
      uint32_t order = Ld(&it->head.order);
      uint64_t vlen = Ld(&it->val_len);
      if (!ValidBlock(off, order) || vlen > BlockSize(order) ||
          kItemHeader + klen + vlen > BlockSize(order))
        return Probe::kRetry;
      const char* p = reinterpret_cast<const char*>(it) + kItemHeader;
      if (std::memcmp(p, key.data(), klen) == 0) {
        int64_t exp = Ld(&it->expires_ms);
        if (exp != 0 && exp <= NowMs()) {
          result = Probe::kExpired;
        } else {
          out->data.assign(p + klen, vlen);
          out->flags = Ld(&it->flags);
          out->expires_ms = exp;
          result = Probe::kHit;
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
  for (int i = 0; i < kOptimisticTries; ++i) {
    uint64_t off = 0;
    Probe p = ProbeOptimistic(key, hash, out, &off);
    if (p == Probe::kRetry) {
      sched_yield();
      continue;
    }
    if (p == Probe::kHit) {
      if (!peek) {
        // SIEVE's only write on a hit, and only when the bit is clear. The
        // map is separate from the blocks: a late write for a block freed
        // meanwhile marks a stale bit, never someone else's data.
        uint8_t* v = VisitedByte(off);
        if (Ld(v) == 0) __atomic_store_n(v, uint8_t(1), __ATOMIC_RELAXED);
        Slot().hits.fetch_add(1, std::memory_order_relaxed);
      }
      return Status::OK();
    }
    if (p == Probe::kMiss) {
      if (!peek) Slot().misses.fetch_add(1, std::memory_order_relaxed);
      return Status::NotFound();
    }
    break;  // expired: reclaim it under the lock
  }
  return ReadLocked(key, hash, out, peek);
}

Status ShmStore::ReadLocked(std::string_view key, uint64_t hash, Value* out, bool peek) {
  Locked lock(this);
  if (!lock.status().ok()) return lock.status();
  uint64_t* link = nullptr;
  uint64_t off = FindOrRepair(key, hash, &link);
  if (off != 0) {
    Item* it = At<Item>(off);
    int64_t now = NowMs();
    if (IsExpired(it->expires_ms, now)) {
      Modifying mod(h_);
      Remove(off, link);
      Slot().expirations.fetch_add(1, std::memory_order_relaxed);
    } else {
      out->data.assign(reinterpret_cast<const char*>(it) + kItemHeader + it->key_len, it->val_len);
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
}

Status ShmStore::GetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
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
                          std::to_string(h_->max_item_size) +
                          " bytes (OPTIONS MAX_ITEM_SIZE); nothing was stored");
}

Status ShmStore::Write(std::string_view key, std::string_view data, uint32_t flags, int64_t exp,
                       Mode mode) {
  if (key.size() + data.size() > h_->max_item_size) return TooLargeError(key, data.size());
  uint64_t hash = Hash(key);
  Locked lock(this);
  if (!lock.status().ok()) return lock.status();
  int64_t now = NowMs();
  uint64_t* link = nullptr;
  uint64_t off = FindOrRepair(key, hash, &link);
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
  __atomic_store_n(VisitedByte(off), uint8_t(0), __ATOMIC_RELAXED);
  uint64_t* bucket = Bucket(hash);
  it->hnext = *bucket;
  *bucket = off;
  SievePushHead(off);
  h_->entries++;
  it->head.state = kStateLive;
  return off;
}

Status ShmStore::Touch(std::string_view key, int64_t expires_ms) {
  uint64_t hash = Hash(key);
  Locked lock(this);
  if (!lock.status().ok()) return lock.status();
  uint64_t* link = nullptr;
  uint64_t off = FindOrRepair(key, hash, &link);
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
}

Status ShmStore::Delete(std::string_view key) {
  uint64_t hash = Hash(key);
  Locked lock(this);
  if (!lock.status().ok()) return lock.status();
  uint64_t* link = nullptr;
  uint64_t off = FindOrRepair(key, hash, &link);
  if (off == 0) return Status::NotFound();
  bool live = !IsExpired(At<Item>(off)->expires_ms, NowMs());
  Modifying mod(h_);
  Remove(off, link);
  if (!live) Slot().expirations.fetch_add(1, std::memory_order_relaxed);
  return live ? Status::OK() : Status::NotFound();
}

Status ShmStore::Incr(std::string_view key, int64_t delta, int64_t* result) {
  uint64_t hash = Hash(key);
  Locked lock(this);
  if (!lock.status().ok()) return lock.status();
  int64_t now = NowMs();
  uint64_t* link = nullptr;
  uint64_t off = FindOrRepair(key, hash, &link);
  if (off == 0) return Status::NotFound();
  Item* it = At<Item>(off);
  if (IsExpired(it->expires_ms, now)) {
    Modifying mod(h_);
    Remove(off, link);
    Slot().expirations.fetch_add(1, std::memory_order_relaxed);
    return Status::NotFound();
  }
  if (Encoding(it->flags) != kEncInt) return Status::NotANumber();
  std::string_view text(reinterpret_cast<const char*>(it) + kItemHeader + it->key_len, it->val_len);
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
  } else {
    int64_t exp = it->expires_ms;
    uint32_t flags = it->flags;
    Remove(off, link);
    Insert(key, hash, nt, flags, exp, now);
  }
  *result = next;
  return Status::OK();
}

Status ShmStore::Clear() {
  Locked lock(this);
  if (!lock.status().ok()) return lock.status();
  Modifying mod(h_);
  seg_->ResetArena();
  return Status::OK();
}

// ------------------------------------------------------ index and lists --

uint64_t ShmStore::FindLocked(std::string_view key, uint64_t hash, uint64_t** link, bool* broken) {
  *broken = false;
  uint64_t* slot = Bucket(hash);
  uint64_t steps = 0;
  while (*slot != 0) {
    uint64_t off = *slot;
    if (!ValidOff(off) || ++steps > h_->entries + 1) {
      *broken = true;
      return 0;
    }
    Item* it = At<Item>(off);
    if (it->head.state != kStateLive || !ValidBlock(off, it->head.order) ||
        kItemHeader + it->key_len + it->val_len > BlockSize(it->head.order)) {
      *broken = true;
      return 0;
    }
    if (it->hash == hash && it->key_len == key.size() &&
        std::memcmp(reinterpret_cast<char*>(it) + kItemHeader, key.data(), key.size()) == 0) {
      *link = slot;
      return off;
    }
    slot = &it->hnext;
  }
  return 0;
}

uint64_t ShmStore::FindOrRepair(std::string_view key, uint64_t hash, uint64_t** link) {
  bool broken = false;
  uint64_t off = FindLocked(key, hash, link, &broken);
  if (!broken) return off;
  {
    Modifying mod(h_);
    Rebuild();
  }
  off = FindLocked(key, hash, link, &broken);
  return broken ? 0 : off;
}

bool ShmStore::UnlinkFromBucket(uint64_t off) {
  Item* it = At<Item>(off);
  uint64_t* slot = Bucket(it->hash);
  for (uint64_t steps = 0; *slot != 0 && steps <= h_->entries + 1; ++steps) {
    if (*slot == off) {
      *slot = it->hnext;
      return true;
    }
    if (!ValidOff(*slot)) return false;
    slot = &At<Item>(*slot)->hnext;
  }
  return false;
}

void ShmStore::SievePushHead(uint64_t off) {
  Item* it = At<Item>(off);
  it->sprev = 0;
  it->snext = h_->sieve_head;
  if (h_->sieve_head) At<Item>(h_->sieve_head)->sprev = off;
  h_->sieve_head = off;
  if (!h_->sieve_tail) h_->sieve_tail = off;
}

void ShmStore::SieveRemove(uint64_t off) {
  Item* it = At<Item>(off);
  if (h_->sieve_hand == off) h_->sieve_hand = it->sprev;
  if (it->sprev) At<Item>(it->sprev)->snext = it->snext;
  else h_->sieve_head = it->snext;
  if (it->snext) At<Item>(it->snext)->sprev = it->sprev;
  else h_->sieve_tail = it->sprev;
  it->sprev = it->snext = 0;
}

void ShmStore::Remove(uint64_t off, uint64_t* link) {
  Item* it = At<Item>(off);
  if (link && *link == off) *link = it->hnext;
  else UnlinkFromBucket(off);
  SieveRemove(off);
  h_->entries--;
  uint32_t order = it->head.order;
  it->head.state = kStateWriting;  // out of the index, not yet on a free list
  FreeBlockAt(off, order);
}

void ShmStore::ListRemoveFree(uint64_t off, uint32_t order) {
  FreeBlock* fb = At<FreeBlock>(off);
  if (fb->prev) At<FreeBlock>(fb->prev)->next = fb->next;
  else h_->free_heads[order] = fb->next;
  if (fb->next) At<FreeBlock>(fb->next)->prev = fb->prev;
}

uint64_t ShmStore::AllocBlock(uint32_t order) {
  uint32_t k = order;
  while (k <= h_->max_order && h_->free_heads[k] == 0) ++k;
  if (k > h_->max_order) return 0;
  uint64_t off = h_->free_heads[k];
  ListRemoveFree(off, k);
  // Split down to the wanted order. The upper half's header is written
  // before the lower half shrinks, so a walk of the arena is valid at every
  // step even if this process dies here.
  while (k > order) {
    --k;
    uint64_t half = off + BlockSize(k);
    FreeBlock* hb = At<FreeBlock>(half);
    hb->head.state = kStateFree;
    hb->head.order = k;
    hb->prev = 0;
    hb->next = h_->free_heads[k];
    if (hb->next) At<FreeBlock>(hb->next)->prev = half;
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
  while (order < h_->max_order) {
    uint64_t rel = off - h_->arena_off;
    uint64_t buddy_rel = rel ^ BlockSize(order);
    if (buddy_rel + BlockSize(order) > h_->arena_size) break;
    uint64_t buddy = h_->arena_off + buddy_rel;
    FreeBlock* bb = At<FreeBlock>(buddy);
    if (bb->head.state != kStateFree || bb->head.order != order) break;
    ListRemoveFree(buddy, order);
    off = std::min(off, buddy);
    ++order;
    At<FreeBlock>(off)->head.order = order;  // the merged block's header, written last
  }
  FreeBlock* fb = At<FreeBlock>(off);
  fb->head.state = kStateFree;
  fb->head.order = order;
  fb->prev = 0;
  fb->next = h_->free_heads[order];
  if (fb->next) At<FreeBlock>(fb->next)->prev = off;
  h_->free_heads[order] = off;
}

bool ShmStore::EvictOne(int64_t now) {
  if (h_->entries == 0 || h_->sieve_tail == 0) return false;
  uint64_t cur = h_->sieve_hand ? h_->sieve_hand : h_->sieve_tail;
  // SIEVE: the hand moves from old to new; a visited entry gets its bit
  // cleared and is passed over, the first unvisited (or expired) one goes.
  // Two full sweeps always find one: the first clears every bit.
  for (uint64_t steps = 0; steps <= 2 * h_->entries + 2; ++steps) {
    Item* it = At<Item>(cur);
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
  return false;
}

uint64_t ShmStore::SweepExpired(int64_t now) {
  if (h_->next_expiry_ms == 0 || now < h_->next_expiry_ms ||
      (h_->last_sweep_ms != 0 && now - h_->last_sweep_ms < kSweepIntervalMs && now >= h_->last_sweep_ms))
    return 0;
  h_->last_sweep_ms = now;
  int64_t next = 0;
  uint64_t removed = 0;
  uint64_t cur = h_->sieve_tail;
  for (uint64_t steps = 0; cur != 0 && steps <= h_->entries + removed + 1; ++steps) {
    if (!ValidOff(cur)) break;  // a damaged list: eviction's own checks handle it
    Item* it = At<Item>(cur);
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
  for (;;) {
    uint64_t off = AllocBlock(order);
    if (off) return off;
    if (SweepExpired(now) != 0) continue;
    if (!EvictOne(now)) break;
  }
  // Nothing left to evict yet no block: the lists disagree with the blocks.
  Rebuild();
  uint64_t off = AllocBlock(order);
  if (off) return off;
  seg_->ResetArena();
  h_->resets++;
  return AllocBlock(order);
}

// --------------------------------------------------------------- recovery --

void ShmStore::Rebuild() {
  // The caller holds the mutex. Readers see an odd seq until we finish.
  uint64_t s = h_->seq.load(std::memory_order_relaxed);
  h_->seq.store(s | 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);

  std::memset(b_ + h_->buckets_off, 0, h_->nbuckets * 8);
  for (auto& f : h_->free_heads) f = 0;
  h_->sieve_head = h_->sieve_tail = h_->sieve_hand = 0;
  h_->entries = 0;
  h_->next_expiry_ms = 1;  // not known: the next sweep recomputes it
  h_->bytes_used = 0;

  // Pass 1: walk the blocks; keep committed entries, set everything else
  // aside. A block header that cannot be valid means the arena itself is
  // damaged: start it afresh.
  std::vector<std::pair<uint64_t, uint32_t>> spare;
  uint64_t pos = 0;
  bool damaged = false;
  while (pos < h_->arena_size) {
    uint64_t off = h_->arena_off + pos;
    auto* bh = At<shm::BlockHead>(off);
    uint32_t order = bh->order;
    if (!ValidBlock(off, order) ||
        (bh->state != kStateFree && bh->state != kStateWriting && bh->state != kStateLive)) {
      damaged = true;
      break;
    }
    Item* it = At<Item>(off);
    bool keep = bh->state == kStateLive && kItemHeader + uint64_t(it->key_len) + it->val_len <=
                                                BlockSize(order);
    if (keep) {
      std::string_view key(reinterpret_cast<char*>(it) + kItemHeader, it->key_len);
      it->hash = Hash(key);
      bool broken = false;
      uint64_t* link = nullptr;
      uint64_t dup = FindLocked(key, it->hash, &link, &broken);
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
      uint64_t* bucket = Bucket(it->hash);
      it->hnext = *bucket;
      *bucket = off;
      SievePushHead(off);
      h_->entries++;
      h_->bytes_used += BlockSize(order);
    } else {
      bh->state = kStateWriting;
      spare.emplace_back(off, order);
    }
    pos += BlockSize(order);
  }
  if (damaged) {
    seg_->ResetArena();
    h_->resets++;
  } else {
    // Pass 2: free the spare blocks, coalescing with free neighbours.
    std::sort(spare.begin(), spare.end());
    for (auto [off, order] : spare) {
      h_->bytes_used += BlockSize(order);  // FreeBlockAt subtracts it again
      FreeBlockAt(off, order);
    }
  }
  std::memset(b_ + h_->visited_off, 0, h_->arena_size >> h_->min_order);
  std::atomic_thread_fence(std::memory_order_release);
  h_->seq.store((s | 1) + 1, std::memory_order_release);
}

// ------------------------------------------------------------- inspection --

uint64_t ShmStore::BlockAtOrAfter(uint64_t target) const {
  // Top-level blocks sit where ResetArena carved them and never move; walk
  // from the one holding target to the first block starting at or after it.
  uint64_t pos = 0;
  while (pos < h_->arena_size) {
    uint32_t order = h_->max_order;
    while (order > h_->min_order &&
           ((pos & (BlockSize(order) - 1)) != 0 || pos + BlockSize(order) > h_->arena_size))
      --order;
    if (target < pos + BlockSize(order)) break;
    pos += BlockSize(order);
  }
  while (pos < target && pos < h_->arena_size) {
    uint32_t order = At<shm::BlockHead>(h_->arena_off + pos)->order;
    if (!ValidBlock(h_->arena_off + pos, order)) return h_->arena_size;
    pos += BlockSize(order);
  }
  return pos;
}

Status ShmStore::List(const ListOptions& opts, ListPage* page) {
  page->entries.clear();
  page->next_cursor.clear();
  page->scanned = 0;
  uint64_t pos = 0;
  if (!opts.cursor.empty()) {
    auto [p, ec] = std::from_chars(opts.cursor.data(), opts.cursor.data() + opts.cursor.size(), pos);
    if (ec != std::errc() || p != opts.cursor.data() + opts.cursor.size())
      return Status::InvalidArgument(Where() + "bad listing cursor '" + opts.cursor + "'");
  }
  size_t limit = opts.limit ? opts.limit : 1000;
  while (pos < h_->arena_size && page->entries.size() < limit) {
    Locked lock(this);
    if (!lock.status().ok()) return lock.status();
    int64_t now = NowMs();
    pos = BlockAtOrAfter(pos);
    for (uint64_t n = 0; n < kWalkChunk && pos < h_->arena_size && page->entries.size() < limit;
         ++n) {
      uint64_t off = h_->arena_off + pos;
      Item* it = At<Item>(off);
      uint32_t order = it->head.order;
      if (!ValidBlock(off, order)) {
        Modifying mod(h_);
        Rebuild();
        return Status::Corruption(Where() + "damaged block found while listing; the region was "
                                  "rebuilt, list again");
      }
      page->scanned++;
      if (it->head.state == kStateLive &&
          kItemHeader + uint64_t(it->key_len) + it->val_len <= BlockSize(order)) {
        bool expired = IsExpired(it->expires_ms, now);
        std::string_view key(reinterpret_cast<char*>(it) + kItemHeader, it->key_len);
        if ((!expired || opts.include_expired) && (opts.glob.empty() || GlobMatch(opts.glob, key))) {
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
  }
  if (pos < h_->arena_size) page->next_cursor = std::to_string(pos);
  return Status::OK();
}

Status ShmStore::GetStats(Stats* out) {
  *out = Stats{};
  {
    Locked lock(this);
    if (!lock.status().ok()) return lock.status();
    out->entries = h_->entries;
    out->bytes_used = h_->bytes_used;
  }
  out->capacity = h_->arena_size;
  for (const auto& s : h_->stats) {
    out->hits += s.hits.load(std::memory_order_relaxed);
    out->misses += s.misses.load(std::memory_order_relaxed);
    out->sets += s.sets.load(std::memory_order_relaxed);
    out->evictions += s.evictions.load(std::memory_order_relaxed);
    out->expirations += s.expirations.load(std::memory_order_relaxed);
  }
  out->extra = {
      {"segment", ShmSegmentName(location())},
      {"segment_size", std::to_string(h_->segment_size)},
      {"layout_version", std::to_string(h_->layout_version)},
      {"max_item_size", std::to_string(h_->max_item_size)},
      {"index_buckets", std::to_string(h_->nbuckets)},
      {"eviction", "SIEVE"},
      {"recoveries", std::to_string(h_->recoveries)},
      {"resets", std::to_string(h_->resets)},
      {"created_ms", std::to_string(h_->created_ms)},
  };
  return Status::OK();
}

Status ShmStore::PurgeExpired(uint64_t* removed) {
  *removed = 0;
  uint64_t pos = 0;
  while (pos < h_->arena_size) {
    Locked lock(this);
    if (!lock.status().ok()) return lock.status();
    int64_t now = NowMs();
    pos = BlockAtOrAfter(pos);
    Modifying mod(h_);
    for (uint64_t n = 0; n < kWalkChunk && pos < h_->arena_size; ++n) {
      uint64_t off = h_->arena_off + pos;
      Item* it = At<Item>(off);
      uint32_t order = it->head.order;
      if (!ValidBlock(off, order)) {
        Rebuild();
        return Status::Corruption(Where() + "damaged block found while purging; the region was "
                                  "rebuilt, purge again");
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
  bool create = true;
  p.size_given = spec.options.count("SIZE") != 0;
  if (!(s = r.Size("SIZE", kDefaultSize, &p.size)).ok()) return s;
  if (!(s = r.Size("MAX_ITEM_SIZE", kDefaultMaxItem, &p.max_item_size)).ok()) return s;
  if (!(s = r.UInt("MAX_ENTRIES", 0, &max_entries)).ok()) return s;
  if (!(s = r.UInt("CULL_FREQUENCY", 3, &cull)).ok()) return s;
  if (!(s = r.Choice("ON_MISMATCH", {"error", "recreate"}, "error", &mismatch)).ok()) return s;
  if (!(s = r.Bool("CREATE", true, &create)).ok()) return s;
  if (!(s = r.CheckAllUsed()).ok()) return s;
  if (p.max_item_size == 0)
    return Status::InvalidArgument("region '" + region + "': option MAX_ITEM_SIZE must be above 0");
  if (cull > 1000000)
    return Status::InvalidArgument("region '" + region + "': option CULL_FREQUENCY=" +
                                   std::to_string(cull) + " is not a sensible fraction");
  p.create = create;
  if (create) p.size_given = true;
  p.max_entries = max_entries;
  p.cull_frequency = static_cast<uint32_t>(cull);
  p.recreate_on_mismatch = mismatch == "recreate";
  auto seg = std::make_unique<shm::Segment>();
  s = seg->Open(p);
  if (!s.ok()) return s;
  *out = std::make_unique<ShmStore>(region, spec.location, std::move(seg), max_entries,
                                    static_cast<uint32_t>(cull));
  return Status::OK();
}

}  // namespace regioncache
