// The shared-memory store, the arena: a buddy allocator over blocks of
// 2^order bytes (allocation splits, freeing coalesces with the buddy), and
// the walk that finds a block boundary for listings and purges.
#include <algorithm>
#include <cstdint>

#include "shm/shm_store.h"

namespace regioncache::shm {

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
    PushFree(off + BlockSize(k), k);
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
  PushFree(off, order);
}

void ShmStore::PushFree(uint64_t off, uint32_t order) {
  uint64_t next = h_->free_heads[order];
  if (next) FreeAt(next, order, "free list head is not a free block")->prev = off;
  FreeBlock* fb = At<FreeBlock>(off);
  fb->head.state = kStateFree;
  fb->head.order = order;
  fb->prev = 0;
  fb->next = next;
  h_->free_heads[order] = off;
}

uint64_t ShmStore::BlockAtOrAfter(uint64_t target) const {
  // Top-level blocks sit where ResetArena carved them and never move; walk
  // from the one holding target to the first block starting at or after it.
  uint64_t pos = 0;
  while (pos < g_.arena_size) {
    uint32_t order = TopBlockOrder(g_, pos);
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

}  // namespace regioncache::shm
