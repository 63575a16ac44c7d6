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
    if (buddy_rel + BlockSize(order) > frontier_) break;
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

uint64_t ShmStore::BlockAtOrAfter(uint64_t target, uint64_t end) const {
  // Top-level blocks sit where ResetArena or Extend carved them and never
  // move; walk from the one holding target to the first block starting at
  // or after it. Nothing at or beyond the frontier `end` is read.
  if (target >= end) return end;
  uint64_t step = shm::FrontierStep(g_);
  uint64_t pos = target / step * step;  // every step boundary starts a top-level block
  while (pos < end) {
    uint32_t order = TopBlockOrder(g_, pos);
    if (target < pos + BlockSize(order)) break;
    pos += BlockSize(order);
  }
  while (pos < target && pos < end) {
    uint32_t order = Ld(&At<shm::BlockHead>(g_.arena_off + pos)->order);
    if (!ValidBlock(g_.arena_off + pos, order, end)) return end;
    pos += BlockSize(order);
  }
  return pos;
}

// ------------------------------------------------------------- the frontier --

void ShmStore::SyncFrontier() {
  uint64_t f = LoadFrontier();
  if (f != 0) {
    frontier_ = f;
    return;
  }
  Log(LogLevel::kWarning, "damaged frontier in segment " + path_ + " (" +
                              std::to_string(h_->frontier) + "): this process's " +
                              std::to_string(frontier_) + " written back, index rebuilt");
  Modifying mod(h_);
  __atomic_store_n(&h_->frontier, frontier_, __ATOMIC_RELEASE);
  Rebuild();
}

bool ShmStore::Extend(int64_t now) {
  const uint64_t from = frontier_;
  if (from >= g_.arena_size) return false;  // all reserved
  if (now < no_extend_until_ms_ && now >= no_extend_until_ms_ - kNoExtendMs) return false;
  const uint64_t step = shm::FrontierStep(g_);
  const uint64_t to = from + step <= g_.arena_size ? from + step : g_.arena_size;
  // 1. Reserve the pages: a write to a page that is not reserved could
  // raise SIGBUS on a full /dev/shm; this fails cleanly instead.
  if (int rc = seg_->Reserve(from, to); rc != 0) {
    no_extend_until_ms_ = now + kNoExtendMs;
    throw NoRoom{rc, to - from};
  }
  // 2. The new blocks' headers, FREE and on no list yet. 3. The frontier,
  // only once they are written: a process dying before it leaves the
  // frontier where it was (the reserved pages are reserved again by the
  // next extension); after it, the rebuild finds FREE blocks on no list
  // and frees them. 4. The free lists.
  std::vector<std::pair<uint64_t, uint32_t>> made;
  for (uint64_t pos = from; pos < to;) {
    uint32_t order = TopBlockOrder(g_, pos);
    auto* fb = At<FreeBlock>(g_.arena_off + pos);
    fb->head.state = kStateFree;
    fb->head.order = order;
    fb->prev = fb->next = 0;
    made.emplace_back(g_.arena_off + pos, order);
    pos += BlockSize(order);
  }
  __atomic_store_n(&h_->frontier, to, __ATOMIC_RELEASE);
  frontier_ = to;
  for (auto [off, order] : made) PushFree(off, order);
  return true;
}

Status ShmStore::NoRoomStatus(const NoRoom& n) const {
  bool full = n.err == ENOSPC;
  std::string msg = "cannot reserve " + std::to_string(n.bytes) + " bytes more for " + path_ +
                    ": " + ErrnoText(n.err) + (full ? " (/dev/shm is full)" : "") +
                    "; nothing was stored, and for the next " +
                    std::to_string(kNoExtendMs / 1000) +
                    " s this process makes room by evicting within the " +
                    std::to_string(frontier_) + " bytes reserved";
  regioncache::Log(LogLevel::kError, region(), kind(), msg);
  return Status::IOError(Where() + msg);
}

}  // namespace regioncache::shm
