// FileStore (file_store.h): inspection -- listing entries a page at a time
// and the region's stats.

#include "file/file_store.h"

#include <charconv>

#include "core/compress.h"
#include "regioncache/glob.h"

namespace regioncache::file {

// The cursor is "<shard>/<name>": the listing resumes after that file name
// in that shard ("" = from the shard's start). Names within a shard are
// visited in sorted order, so a page boundary is a stable position even when
// files come and go.
Status FileStore::List(const ListOptions& opts, ListPage* page) {
  if (Status h = Health(false); !h.ok()) return h;
  page->entries.clear();
  page->next_cursor.clear();
  page->scanned = 0;
  int shard = 0;
  std::string after;
  if (!opts.cursor.empty()) {
    const std::string& c = opts.cursor;
    size_t slash = c.find('/');
    int v = -1;
    if (slash == 2) {
      auto [p, ec] = std::from_chars(c.data(), c.data() + 2, v, 16);
      if (ec != std::errc() || p != c.data() + 2) v = -1;
    }
    after = slash == std::string::npos ? "" : c.substr(slash + 1);
    if (v < 0 || v >= kShards || (!after.empty() && file::ShardOfName(after) != v))
      return Status::InvalidArgument(RegionMessage(region(), "bad listing cursor '" + c + "'"));
    shard = v;
  }
  size_t limit = opts.limit ? opts.limit : 1000;
  int64_t now = NowMs();
  for (; shard < kShards; ++shard, after.clear()) {
    std::string dirpath = ShardPath(shard);
    std::vector<std::string> names;
    {
      DIR* d = nullptr;
      bool missing = false;
      Status ds = OpenShardDir(shard, &d, &missing);
      if (!ds.ok()) return ds;
      if (missing) continue;
      while (dirent* de = readdir(d)) {
        std::string_view nm(de->d_name);
        if (file::ShardOfName(nm) == shard && (after.empty() || nm > after)) names.emplace_back(nm);
      }
      closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (size_t i = 0; i < names.size(); ++i) {
      if (page->entries.size() >= limit || page->scanned >= kListScanCap + limit) {
        page->next_cursor = file::ShardDirName(shard) + "/" + (i ? names[i - 1] : after);
        return Status::OK();
      }
      page->scanned++;
      OpenEntry o;
      Head head;
      std::string why;
      // A file that fails its checks is read again from a fresh open before
      // it is judged: without the lock, it may be a reused file being
      // rewritten under us (FORMAT.md, "Inode reuse").
      bool bad = false;
      for (int attempt = 1; attempt <= kReadAttempts; ++attempt) {
        o.Reset();
        Status s = file::ReadHead(region(), dirpath + "/" + names[i], false, kHeadRead, &o, &head,
                                  &why);
        if (!s.ok()) return s;
        bad = head == Head::kBad;
        if (head == Head::kOk && file::EntryName(o.key()) != names[i]) {
          bad = true;
          why = "holds a key that does not hash to its name (a foreign or misplaced file)";
        }
        if (!bad) break;
      }
      if (head == Head::kAbsent) continue;
      if (bad) {
        if (o.fd >= 0) DropBad(shard, names[i], o, false, why);
        continue;
      }
      if (!opts.include_expired && IsExpired(o.h.expires_ms, now)) continue;
      if (!opts.glob.empty() && !GlobMatch(opts.glob, o.key())) continue;
      EntryInfo e;
      e.key.assign(o.key());
      e.value_size = o.h.raw_len;
      e.expires_ms = o.h.expires_ms;
      e.stored_ms = o.h.stored_ms;
      e.flags = o.h.flags & ~uint32_t(kFlagZstd);
      page->entries.push_back(std::move(e));
    }
  }
  return Status::OK();
}

Status FileStore::GetStats(Stats* out) {
  if (Status h = Health(false); !h.ok()) return h;
  *out = Stats{};
  auto& c = ledger_->counters();
  out->entries = ledger_->TotalEntries();
  out->bytes_used = ledger_->TotalBytes();
  out->capacity = cfg_.max_size;
  out->hits = c.hits.load(std::memory_order_relaxed);
  out->misses = c.misses.load(std::memory_order_relaxed);
  out->sets = c.sets.load(std::memory_order_relaxed);
  out->evictions = c.evictions.load(std::memory_order_relaxed);
  out->expirations = c.expirations.load(std::memory_order_relaxed);
  out->errors = ledger_->errors().load(std::memory_order_relaxed);
  out->stampede_waits = ledger_->stampede_waits().load(std::memory_order_relaxed);
  out->extra = {
      {"directory", dir_},
      {"format_version", std::to_string(file::kVersion)},
      {"shards", std::to_string(kShards)},
      {"max_item_size", std::to_string(cfg_.max_item)},
      {"max_entries", std::to_string(cfg_.max_entries)},
      {"cull_frequency", std::to_string(cfg_.cull_frequency)},
      {"compress_min_size", std::to_string(cfg_.compress_min)},
      {"fsync", cfg_.fsync ? "true" : "false"},
      {"eviction", "expired first, then oldest stored, in sampled shards"},
      {"corrupt_removed", std::to_string(c.corrupt_removed.load(std::memory_order_relaxed))},
      {"spare_bytes", std::to_string(ledger_->TotalSpareBytes())},
      {"dead_temp_bytes", std::to_string(ledger_->Totals().temp_bytes)},
      {"files_scanned", std::to_string(c.files_scanned.load(std::memory_order_relaxed))},
      {"evict_scans", std::to_string(c.evict_scans.load(std::memory_order_relaxed))},
      {"created_ms", std::to_string(ledger_->created_ms())},
  };
  return Status::OK();
}

}  // namespace regioncache::file
