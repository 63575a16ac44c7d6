// The shared-memory store, the contract: Get/Peek/Set/Add/Replace/Touch/
// Delete/Incr/Clear/GetMany, the inspection calls (List, GetStats) and
// OpenShmStore, which reads the OPTIONS and opens the segment. The other
// concerns live beside it (shm_store.h lists them); the design is LAYOUT.md.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "regioncache/codec.h"
#include "regioncache/glob.h"
#include "regioncache/options.h"
#include "shm/shm_store.h"

namespace regioncache::shm {

// ---------------------------------------------------------------- reading --

Status ShmStore::Read(std::string_view key, Value* out, bool peek) {
  uint64_t hash = Hash(key);
  Status s = ReadStored(key, hash, out, peek);
  if (!s.ok()) return s;
  const bool count = !peek && !read_only_;
  if (out->flags & kFlagZstd) {
    // After the copy (under the seqlock or the mutex), outside any lock.
    std::string why;
    if (!Unpack(key, out, &why)) {
      DropBadFrame(key, hash, out->data, why);
      out->data.clear();
      out->flags = 0;
      if (count) Slot().misses.fetch_add(1, std::memory_order_relaxed);
      return Status::NotFound();
    }
  }
  if (count) Slot().hits.fetch_add(1, std::memory_order_relaxed);
  return Status::OK();
}

Status ShmStore::ReadStored(std::string_view key, uint64_t hash, Value* out, bool peek) {
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
        // meanwhile marks a stale bit, never someone else's data. The hit
        // is counted by Read, once the value is decoded.
        uint8_t* v = VisitedByte(off);
        if (Ld(v) == 0) __atomic_store_n(v, uint8_t(1), __ATOMIC_RELAXED);
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
        CountError();
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
        CountError();
        Modifying mod(h_);
        Remove(off, link);
      } else {
        out->data.assign(reinterpret_cast<const char*>(it) + kItemHeader + it->key_len,
                         it->val_len);
        out->flags = it->flags;
        out->expires_ms = it->expires_ms;
        if (!peek) __atomic_store_n(VisitedByte(off), uint8_t(1), __ATOMIC_RELAXED);
        return Status::OK();  // the hit is counted by Read, once decoded
      }
    }
    if (!peek) Slot().misses.fetch_add(1, std::memory_order_relaxed);
    return Status::NotFound();
  });
}

// ------------------------------------------------------------ compression --

uint32_t ShmStore::Pack(std::string_view data, uint32_t flags, std::string* frame) const {
  if (compress_min_ == 0 || data.size() < compress_min_ || Encoding(flags) == kEncInt)
    return flags;
  // Worth it only if it saves an eighth: every read pays the decompression.
  if (!Compress(data, compress_level_, data.size() - data.size() / 8, frame)) return flags;
  return flags | kFlagZstd;
}

bool ShmStore::Unpack(std::string_view key, Value* out, std::string* why) const {
  // A value of key + value bytes within MAX_ITEM_SIZE was compressed (the
  // limit applies to the value given): a frame that claims more lies, and
  // nothing is allocated for it.
  uint64_t limit = key.size() < max_item_ ? max_item_ - key.size() : 0;
  uint64_t size = 0;
  if (!FrameContentSize(out->data, limit, &size)) {
    *why = "its zstd frame gives no content size, or one above the " + std::to_string(limit) +
           " bytes MAX_ITEM_SIZE leaves beside the key";
    return false;
  }
  std::string raw;
  raw.resize(size_t(size));
  std::string zerr;
  if (!Decompress(out->data, raw.data(), raw.size(), &zerr)) {
    *why = "its zstd frame does not decompress to the " + std::to_string(size) +
           " bytes it claims (" + zerr + ")";
    return false;
  }
  out->data.swap(raw);
  out->flags &= ~kFlagZstd;
  return true;
}

void ShmStore::DropBadFrame(std::string_view key, uint64_t hash, const std::string& frame,
                            const std::string& why) {
  CountError();
  Log(LogLevel::kWarning, "compressed entry for a key of " + std::to_string(key.size()) +
                              " bytes in " + path_ + " is unreadable: " + why + "; a miss" +
                              (read_only_ ? " (read-only: left as it is)" : ", removed"));
  if (read_only_) return;
  // Removed only if it still holds the frame that failed: a writer may
  // have replaced it since the copy.
  Locking([&]() -> Status {
    uint64_t* link = nullptr;
    uint64_t off = FindLocked(key, hash, &link);
    if (off == 0) return Status::OK();
    Item* it = At<Item>(off);
    if (!(it->flags & kFlagZstd) || ValueOf(it) != frame) return Status::OK();
    Modifying mod(h_);
    Remove(off, link);
    return Status::OK();
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

Status ShmStore::DoWrite(WriteMode mode, std::string_view key, std::string_view data,
                         uint32_t flags, int64_t exp) {
  // MAX_ITEM_SIZE bounds the value given, compressed or not (as the file
  // store does): whether a value fits does not depend on how well it
  // compresses, and a reader can bound what it decompresses.
  if (key.size() + data.size() > max_item_) return TooLargeError(key, data.size(), max_item_);
  if (flags & kFlagZstd) return ReservedFlagError();
  std::string frame;
  flags = Pack(data, flags, &frame);  // before the lock
  if (flags & kFlagZstd) data = frame;
  uint64_t hash = Hash(key);
  return Locking([&]() -> Status {
    int64_t now = NowMs();
    uint64_t* link = nullptr;
    uint64_t off = FindLocked(key, hash, &link);
    bool live = off != 0 && !IsExpired(At<Item>(off)->expires_ms, now);
    if (mode == WriteMode::kAdd && live) return Status::NotStored();
    if (mode == WriteMode::kReplace && !live) return Status::NotStored();
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

uint64_t ShmStore::FindLiveLocked(std::string_view key, uint64_t hash, int64_t now,
                                  uint64_t** link) {
  uint64_t off = FindLocked(key, hash, link);
  if (off == 0) return 0;
  Item* it = At<Item>(off);
  bool expired = IsExpired(it->expires_ms, now);
  if (!expired && CheckOk(it)) return off;
  Modifying mod(h_);
  Remove(off, *link);
  if (expired) Slot().expirations.fetch_add(1, std::memory_order_relaxed);
  else {
    Log(LogLevel::kWarning, "entry at offset " + std::to_string(off) + " of " + path_ +
                                " failed its checksum: removed, a miss");
    CountError();
  }
  return 0;
}

Status ShmStore::DoCompareAndSwap(std::string_view key, std::string_view expected,
                                  uint32_t expected_flags, const WriteItem* with) {
  std::string frame;
  std::string_view wdata;
  uint32_t wflags = 0;
  if (with) {
    if (key.size() + with->data.size() > max_item_)
      return TooLargeError(key, with->data.size(), max_item_);
    if (with->flags & kFlagZstd) return ReservedFlagError();
    wflags = Pack(with->data, with->flags, &frame);  // before the lock
    wdata = (wflags & kFlagZstd) ? std::string_view(frame) : with->data;
  }
  // A compressed entry is compared with `expected` outside the lock: its
  // frame is copied under the lock, decompressed after it, and the swap
  // made under the lock again only if the entry is still the one compared
  // (same seqno and checksum); otherwise compared afresh.
  uint64_t agreed_seqno = 0, agreed_check = 0;
  for (int round = 0; round < 16; ++round) {
    bool compare_outside = false;
    Value stored;
    uint64_t stored_seqno = 0, stored_check = 0;
    Status s = WithLiveLocked(key, [&](uint64_t hash, int64_t now, uint64_t off, uint64_t* link,
                                       Item* it) -> Status {
      if ((it->flags & ~kFlagZstd) != expected_flags) return Status::NotStored();
      if (it->flags & kFlagZstd) {
        if (agreed_seqno == 0 || it->seqno != agreed_seqno || it->check != agreed_check) {
          stored.data.assign(ValueOf(it));
          stored.flags = it->flags;
          stored_seqno = it->seqno;
          stored_check = it->check;
          compare_outside = true;
          return Status::OK();
        }
      } else if (ValueOf(it) != expected) {
        return Status::NotStored();
      }
      Modifying mod(h_);
      if (!with) {
        Remove(off, link);
        return Status::OK();
      }
      // The new entry is linked before the old one is freed: a process killed
      // in between leaves both, and recovery keeps the newer (LAYOUT.md,
      // "Recovery"); freed first, a kill there would lose the key. The
      // allocation may have evicted the old entry itself: then it is gone.
      uint64_t old_seqno = it->seqno;
      Insert(key, hash, wdata, wflags, with->expires_ms, now);
      Item* old = At<Item>(off);
      if (old->head.state == kStateLive && old->seqno == old_seqno) Remove(off, nullptr);
      Slot().sets.fetch_add(1, std::memory_order_relaxed);
      return Status::OK();
    });
    if (!s.ok() || !compare_outside) return s;
    std::string why;
    if (!Unpack(key, &stored, &why)) {
      DropBadFrame(key, Hash(key), stored.data, why);
      return Status::NotFound();
    }
    if (stored.data != expected) return Status::NotStored();
    agreed_seqno = stored_seqno;
    agreed_check = stored_check;
  }
  // Rewritten under us at every round: it is not the value the caller saw.
  return Status::NotStored();
}

Status ShmStore::DoIncr(std::string_view key, int64_t delta, int64_t* result) {
  return WithLiveLocked(key, [&](uint64_t hash, int64_t now, uint64_t off, uint64_t* link,
                                 Item* it) -> Status {
    // An int is never compressed (Pack): a compressed entry is no number.
    if (Encoding(it->flags) != kEncInt || (it->flags & kFlagZstd)) return Status::NotANumber();
    DecimalSum sum;
    if (Status st = AddToDecimal(ValueOf(it), delta, &sum); !st.ok()) return st;
    std::string_view nt = sum.view();
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
    *result = sum.value;
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

// ------------------------------------------------------------- inspection --

// A listing cursor is the arena position to resume at, in decimal ("" = 0).
Status ShmStore::ParseCursor(const std::string& cursor, uint64_t* pos) const {
  *pos = 0;
  if (cursor.empty()) return Status::OK();
  auto [p, ec] = std::from_chars(cursor.data(), cursor.data() + cursor.size(), *pos);
  if (ec != std::errc() || p != cursor.data() + cursor.size())
    return Status::InvalidArgument(Where() + "bad listing cursor '" + cursor + "'");
  return Status::OK();
}

uint64_t ShmStore::ListChunk(uint64_t* pos, size_t limit, const ListOptions& opts, int64_t now,
                             std::vector<EntryInfo>* got, uint64_t* scanned) const {
  for (uint64_t n = 0; n < kWalkChunk && *pos < g_.arena_size && got->size() < limit; ++n) {
    uint64_t off = g_.arena_off + *pos;
    const Item* it = At<Item>(off);
    uint32_t order = Ld(&it->head.order);
    if (!ValidBlock(off, order)) return off;
    ++*scanned;
    *pos += BlockSize(order);
    uint32_t klen = Ld(&it->key_len);
    uint64_t vlen = Ld(&it->val_len);
    if (Ld(&it->head.state) != kStateLive || !Fits(order, klen, vlen)) continue;
    int64_t exp = Ld(&it->expires_ms);
    if (IsExpired(exp, now) && !opts.include_expired) continue;
    std::string_view key(reinterpret_cast<const char*>(it) + kItemHeader, klen);
    if (!opts.glob.empty() && !GlobMatch(opts.glob, key)) continue;
    uint32_t flags = Ld(&it->flags);
    if (flags & kFlagZstd) {
      // The size the value was given with, from the frame's header (a few
      // bytes parsed, nothing decompressed); the stored size if it lies.
      uint64_t raw = 0;
      std::string_view frame(reinterpret_cast<const char*>(it) + kItemHeader + klen, vlen);
      if (FrameContentSize(frame, max_item_, &raw)) vlen = raw;
    }
    EntryInfo& e = got->emplace_back();
    e.key.assign(key);
    e.value_size = vlen;
    e.expires_ms = exp;
    e.stored_ms = Ld(&it->stored_ms);
    e.flags = flags & ~kFlagZstd;
  }
  return 0;
}

Status ShmStore::DoList(const ListOptions& opts, ListPage* page) {
  page->entries.clear();
  page->next_cursor.clear();
  page->scanned = 0;
  uint64_t pos = 0;
  if (Status cs = ParseCursor(opts.cursor, &pos); !cs.ok()) return cs;
  size_t limit = opts.limit ? opts.limit : 1000;
  while (pos < g_.arena_size && page->entries.size() < limit) {
    Status st = read_only_ ? ListChunkReadOnly(&pos, limit, opts, page)
                           : Locking([&]() -> Status {
                               pos = BlockAtOrAfter(pos);
                               uint64_t bad = ListChunk(&pos, limit, opts, NowMs(),
                                                        &page->entries, &page->scanned);
                               if (bad == 0) return Status::OK();
                               Modifying mod(h_);
                               return RebuiltAfterWalk(bad, "listing", "list again");
                             });
    if (!st.ok()) return st;
  }
  if (pos < g_.arena_size) page->next_cursor = std::to_string(pos);
  return Status::OK();
}

Status ShmStore::ListChunkReadOnly(uint64_t* pos, size_t limit, const ListOptions& opts,
                                   ListPage* page) {
  // No lock (the mapping is read-only): the chunk is read under the seqlock
  // and read again if a writer moved meanwhile. Damage is reported, never
  // repaired.
  for (int tries = 0; tries < kReadOnlyTries; ++tries) {
    uint64_t s1 = h_->seq.load(std::memory_order_acquire);
    if (s1 & 1) {
      sched_yield();
      continue;
    }
    std::vector<EntryInfo> got;
    uint64_t scanned = 0;
    uint64_t p = BlockAtOrAfter(*pos);
    uint64_t bad = ListChunk(&p, limit - page->entries.size(), opts, NowMs(), &got, &scanned);
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
    *pos = p;
    return Status::OK();
  }
  return Status::Corruption(Where() + "segment " + path_ +
                            " stays inconsistent while listing (a writer died mid-change?); "
                            "opened read-only, so it is left for a writable session");
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
    out->errors += s.errors.load(std::memory_order_relaxed);
    out->stampede_waits += s.stampede_waits.load(std::memory_order_relaxed);
  }
  out->errors += own_events_.Get(Event::kError);  // a read-only mapping's own
  out->stampede_waits += own_events_.Get(Event::kStampedeWait);
  out->extra = {
      {"segment", ShmSegmentName(location())},
      {"segment_size", std::to_string(size_)},
      {"layout_version", std::to_string(shm::kLayoutVersion)},
      {"max_item_size", std::to_string(max_item_)},
      {"index_buckets", std::to_string(g_.nbuckets)},
      {"eviction", "SIEVE"},
      {"compress_min_size", std::to_string(compress_min_)},
      {"compress_level", std::to_string(compress_level_)},
      {"recoveries", std::to_string(Ld(&h_->recoveries))},
      {"resets", std::to_string(Ld(&h_->resets))},
      {"created_ms", std::to_string(Ld(&h_->created_ms))},
  };
  if (read_only_) out->extra.emplace_back("mode", "read-only");
  return Status::OK();
}

}  // namespace regioncache::shm

namespace regioncache {

using shm::ShmStore;
using shm::kDefaultLockTimeoutMs;
using shm::kDefaultMaxItem;
using shm::kDefaultSize;

Status OpenShmStore(const StoreSpec& spec, std::unique_ptr<Store>* out) {
  std::string region = spec.region.empty() ? spec.location : spec.region;
  Status s = shm::ValidateRegionName(spec.location);
  if (!s.ok()) {
    return Status::InvalidArgument(RegionMessage(region, "LOCATION '" + spec.location +
                                   "' is not a valid shared-memory region name (1 to 200 letters, "
                                   "digits, '.', '_' or '-')"));
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
  uint64_t compress_min = 0, compress_level = 1;
  p.size_given = spec.options.count("SIZE") != 0;
  if (!(s = r.Size("SIZE", kDefaultSize, &p.size)).ok()) return s;
  if (!(s = r.Size("MAX_ITEM_SIZE", kDefaultMaxItem, &p.max_item_size)).ok()) return s;
  if (!(s = r.UInt("MAX_ENTRIES", 0, &max_entries)).ok()) return s;
  if (!(s = r.UInt("CULL_FREQUENCY", 3, &cull)).ok()) return s;
  if (!(s = r.Choice("ON_MISMATCH", {"error", "recreate"}, "error", &mismatch)).ok()) return s;
  if (!(s = r.Bool("CREATE", true, &create)).ok()) return s;
  if (!(s = r.Bool("READ_ONLY", false, &read_only)).ok()) return s;
  if (!(s = r.Millis("LOCK_TIMEOUT", kDefaultLockTimeoutMs, &lock_timeout_ms)).ok()) return s;
  if (!(s = r.Size("COMPRESS_MIN_SIZE", 0, &compress_min)).ok()) return s;
  if (!(s = r.UInt("COMPRESS_LEVEL", 1, &compress_level)).ok()) return s;
  if (!(s = r.CheckAllUsed()).ok()) return s;
  if (p.max_item_size == 0)
    return Status::InvalidArgument(RegionMessage(region, "option MAX_ITEM_SIZE must be above 0"));
  if (cull > 1000000)
    return Status::InvalidArgument(RegionMessage(region, "option CULL_FREQUENCY=" +
                                   std::to_string(cull) + " is not a sensible fraction"));
  if (lock_timeout_ms <= 0)
    return Status::InvalidArgument(RegionMessage(region, "option LOCK_TIMEOUT must be above 0"));
  if (compress_level < 1 || compress_level > 19)
    return Status::InvalidArgument(RegionMessage(region, "option COMPRESS_LEVEL=" +
                                   std::to_string(compress_level) +
                                   " is not a zstd level from 1 to 19"));
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
  InstallFaultHandler();
  *out = std::make_unique<ShmStore>(region, spec.location, std::move(seg), max_entries,
                                    static_cast<uint32_t>(cull), read_only, lock_timeout_ms,
                                    compress_min, static_cast<int>(compress_level));
  return Status::OK();
}

}  // namespace regioncache
