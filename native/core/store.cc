#include "regioncache/store.h"

#include "regioncache/glob.h"

namespace regioncache {

Status Store::GetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                      std::vector<bool>* found) {
  values->assign(keys.size(), Value{});
  found->assign(keys.size(), false);
  for (size_t i = 0; i < keys.size(); ++i) {
    Status s = Get(keys[i], &(*values)[i]);
    if (s.ok()) (*found)[i] = true;
    else if (!s.IsNotFound()) return s;
  }
  return Status::OK();
}

Status Store::SetMany(std::span<const WriteItem> items, std::vector<size_t>* failed) {
  failed->clear();
  Status first_error;
  for (size_t i = 0; i < items.size(); ++i) {
    const WriteItem& it = items[i];
    Status s = Set(it.key, it.data, it.flags, it.expires_ms);
    if (!s.ok()) {
      failed->push_back(i);
      if (first_error.ok()) first_error = s;
    }
  }
  // A partial failure is reported through `failed`; the status says only
  // whether the store itself failed for every item.
  if (!items.empty() && failed->size() == items.size()) return first_error;
  return Status::OK();
}

Status Store::DeleteMany(std::span<const std::string_view> keys, uint64_t* deleted) {
  *deleted = 0;
  for (auto k : keys) {
    Status s = Delete(k);
    if (s.ok()) ++*deleted;
    else if (!s.IsNotFound()) return s;
  }
  return Status::OK();
}

const char* ScopeName(Scope s) {
  switch (s) {
    case Scope::kRegion: return "region";
    case Scope::kProcess: return "process";
    case Scope::kServers: return "servers";
  }
  return "region";
}

Status Store::Peek(std::string_view key, Value* out) { return Get(key, out); }

Status Store::CompareAndSwap(std::string_view, std::string_view, uint32_t, const WriteItem*) {
  return Status::InvalidArgument(
      RegionMessage(region(), "the " + std::string(kind()) + " store cannot compare and swap"));
}

Status Store::PurgeMatching(std::string_view glob, uint64_t* removed, const Progress& progress) {
  *removed = 0;
  // Collect first, then delete: deleting while a cursor walks the store
  // could skip entries in stores whose cursor is a position.
  std::vector<std::string> keys;
  ListOptions opts;
  opts.glob = std::string(glob);
  opts.include_expired = true;
  opts.limit = 10000;
  for (;;) {
    ListPage page;
    Status s = List(opts, &page);
    if (!s.ok()) return s;
    for (auto& e : page.entries) keys.push_back(std::move(e.key));
    if (page.next_cursor.empty()) break;
    opts.cursor = page.next_cursor;
    if (progress && !progress(0)) return Status::Cancelled();
  }
  const size_t kBatch = 500;
  for (size_t i = 0; i < keys.size(); i += kBatch) {
    std::vector<std::string_view> batch;
    for (size_t j = i; j < keys.size() && j < i + kBatch; ++j) batch.push_back(keys[j]);
    uint64_t n = 0;
    Status s = DeleteMany(batch, &n);
    if (!s.ok()) return s;
    *removed += n;
    if (progress && !progress(*removed)) return Status::Cancelled();
  }
  return Status::OK();
}

}  // namespace regioncache
