// The shared-memory segment layout, version 3. Every reference inside the
// segment is a byte offset from the segment's start (processes map it at
// different addresses). The prose description, kept in step with this file,
// is native/shm/LAYOUT.md.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace regioncache::shm {

inline constexpr uint64_t kMagic = 0x3130304d48534352ull;  // "RCSHM001" little-endian
inline constexpr uint32_t kLayoutVersion = 3;  // 3: item checksum, lock_epoch

inline constexpr uint32_t kMinOrder = 7;   // smallest block: 128 bytes
inline constexpr uint32_t kMaxOrders = 40; // orders 0..39 addressable (blocks up to 512 GiB)
inline constexpr uint32_t kStatSlots = 16; // per-CPU counters, so readers do not share a line
inline constexpr uint64_t kHeaderBytes = 8192;

// The bytes of a block of this order.
inline constexpr uint64_t BlockSize(uint32_t order) { return uint64_t(1) << order; }

// Block states. Values are distinct four-byte tags so that a stray byte
// pattern is not mistaken for a valid state.
inline constexpr uint32_t kStateFree = 0x45455246;     // "FREE"
inline constexpr uint32_t kStateWriting = 0x54495257;  // "WRIT": allocated, not yet committed
inline constexpr uint32_t kStateLive = 0x4556494c;     // "LIVE": committed entry

struct alignas(64) StatSlot {
  std::atomic<uint64_t> hits;
  std::atomic<uint64_t> misses;
  std::atomic<uint64_t> sets;
  std::atomic<uint64_t> evictions;
  std::atomic<uint64_t> expirations;
  // In the slot's spare bytes (no layout change): a segment made before
  // they were counted reads 0 here.
  std::atomic<uint64_t> errors;          // failures the Python layer saw (Store::Count)
  std::atomic<uint64_t> stampede_waits;  // callers that waited for another's computation
};
static_assert(sizeof(StatSlot) == 64, "a stat slot is one cache line");

// At offset 0. Fields above `mutex` are written once at creation (magic
// last) and never change; the rest change only with `mutex` held, except
// `seq` (see below) and the stat slots (atomics, any process, no lock).
struct Header {
  uint64_t magic;             // kMagic once initialisation is complete
  uint32_t layout_version;    // kLayoutVersion
  uint32_t header_bytes;      // kHeaderBytes
  uint64_t segment_size;      // the whole segment, == the configured SIZE
  uint64_t max_item_size;     // key + value bytes one entry may hold
  uint32_t min_order;         // kMinOrder
  uint32_t max_order;         // largest block order (fits header + max item)
  uint64_t buckets_off;       // uint64_t[nbuckets]: first item offset per bucket, 0 = empty
  uint64_t nbuckets;          // power of two
  uint64_t visited_off;       // uint8_t[arena_size >> min_order]: SIEVE visited bits
  uint64_t arena_off;         // start of the block arena
  uint64_t arena_size;        // multiple of (1 << min_order)
  int64_t created_ms;
  uint64_t max_entries;       // Django MAX_ENTRIES, 0 = no count bound
  uint32_t cull_frequency;    // Django CULL_FREQUENCY
  uint32_t reserved0;

  alignas(64) pthread_mutex_t mutex;  // robust, process-shared: the writers' lock
  // Counts the times a waiter broke a lock held too long (see LAYOUT.md,
  // Concurrency). Changed only with the segment's flock held.
  uint64_t lock_epoch;

  // Seqlock for lock-free readers: a writer makes it odd before touching the
  // index or any entry and even again when done; a reader that sees it odd,
  // or changed across its read, retries (and after a few tries takes mutex).
  alignas(64) std::atomic<uint64_t> seq;

  alignas(64) uint64_t item_seqno;    // last sequence number given to an entry
  uint64_t entries;                   // LIVE entries linked in the index
  uint64_t bytes_used;                // sum of allocated (non-free) block sizes
  uint64_t free_heads[kMaxOrders];    // per order: first free block, 0 = none
  uint64_t sieve_head;                // newest entry
  uint64_t sieve_tail;                // oldest entry
  uint64_t sieve_hand;                // next eviction candidate, 0 = start at tail
  uint64_t recoveries;                // times a dead lock holder was recovered from
  uint64_t resets;                    // times the arena was found broken and cleared
  int64_t next_expiry_ms;             // <= the earliest expiry of any live entry; 0 = none
  int64_t last_sweep_ms;              // when eviction last swept out expired entries

  StatSlot stats[kStatSlots];
};
static_assert(sizeof(Header) <= kHeaderBytes, "header outgrew its reserved space");

// Every block starts with these 8 bytes.
struct BlockHead {
  uint32_t state;
  uint32_t order;   // block size is 1 << order
};

// A free block: linked in free_heads[order].
struct FreeBlock {
  BlockHead head;
  uint64_t prev;
  uint64_t next;
};

// A LIVE or WRITING block: one entry. Key bytes follow the header, then the
// value bytes. Offsets (hnext, sprev, snext) are segment offsets, 0 = none.
struct Item {
  BlockHead head;
  uint32_t flags;       // codec flags
  uint32_t key_len;
  uint64_t val_len;
  uint64_t hash;        // XXH3-64 of the key
  uint64_t hnext;       // next entry in the same hash bucket
  uint64_t sprev;       // SIEVE list: toward the newest entry
  uint64_t snext;       // SIEVE list: toward the oldest entry
  int64_t expires_ms;   // 0 = never
  int64_t stored_ms;
  uint64_t seqno;       // order of commit: on recovery, the newer of two equal keys wins
  uint64_t check;       // XXH3-64 of the value bytes, seeded with hash ^ flags
};
inline constexpr uint64_t kItemHeader = sizeof(Item);
static_assert(kItemHeader == 88, "Item header layout changed: bump kLayoutVersion");

// Where each part goes for a segment of `size` bytes holding items of up to
// `max_item` key+value bytes. Deterministic: an opener recomputes it and
// compares with the header to detect a foreign or damaged segment.
struct Geometry {
  uint32_t max_order;
  uint64_t nbuckets;
  uint64_t buckets_off;
  uint64_t visited_off;
  uint64_t arena_off;
  uint64_t arena_size;
};

// False if `size` is too small for `max_item`.
bool ComputeGeometry(uint64_t size, uint64_t max_item, Geometry* g);

// The order of the top-level block at arena position `pos` (relative to
// arena_off): the largest aligned block that fits there. ResetArena carves
// the arena into these, and they never move.
uint32_t TopBlockOrder(const Geometry& g, uint64_t pos);

}  // namespace regioncache::shm
