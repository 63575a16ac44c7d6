// The shared-memory store, locking and recovery: waiting for the writers'
// lock and breaking one held too long, the size and header checks made
// under it, and rebuilding the index, lists and counters from the block
// headers (LAYOUT.md, "Recovery").
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "regioncache/blocking.h"
#include "shm/shm_store.h"

namespace regioncache::shm {

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

Status ShmStore::RebuiltAfterWalk(uint64_t off, const char* doing, const char* again) {
  Log(LogLevel::kWarning, "damaged block header at offset " + std::to_string(off) + " of " +
                              path_ + " found while " + doing + "; index rebuilt");
  Rebuild();
  return Status::Corruption(Where() + "damaged block found while " + doing + " " + path_ +
                            "; the region was rebuilt, " + again);
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

}  // namespace regioncache::shm
