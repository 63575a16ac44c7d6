// The shared-memory store, eviction and expiry: the SIEVE list (one list
// over every entry, a hand moving from old to new), the sweep of expired
// entries, Django's MAX_ENTRIES cull, allocation that evicts until a block
// is free, and PurgeExpired.
#include <algorithm>
#include <cstdint>

#include "shm/shm_store.h"

namespace regioncache::shm {

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
        if (!ValidBlock(off, order)) return RebuiltAfterWalk(off, "purging", "purge again");
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

}  // namespace regioncache::shm
