// The shared-memory store, the hash index: the lock-free probe readers make
// under the seqlock, and (with the mutex held) finding, inserting and
// removing entries in their bucket chains.
#include <cstring>
#include <string_view>

#include "shm/shm_store.h"

namespace regioncache::shm {

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

// ----------------------------------------------- with the mutex held --

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

}  // namespace regioncache::shm
