#include "write_gate.h"

#include <string_view>

#include "regioncache/status.h"

namespace rcgui {

using regioncache::Status;

Status WriteGate::refuse(const Region& r, const char* what) const {
  return Status::InvalidArgument(regioncache::RegionMessage(
      r.spec().name.toStdString(), std::string(what) + " refused: the app is in read-only mode"));
}

Status WriteGate::deleteKeys(Region& r, const std::vector<std::string>& keys,
                             uint64_t* deleted) const {
  *deleted = 0;
  if (readOnly()) return refuse(r, "delete");
  Status s;
  auto store = r.acquire(&s);
  if (!store) return s;
  std::vector<std::string_view> views(keys.begin(), keys.end());
  return store->DeleteMany(views, deleted);
}

Status WriteGate::purgeMatching(Region& r, const std::string& glob, uint64_t* removed,
                                const regioncache::Progress& progress) const {
  *removed = 0;
  if (readOnly()) return refuse(r, "purge");
  if (glob.empty())
    return Status::InvalidArgument(regioncache::RegionMessage(
        r.spec().name.toStdString(), "purge needs a filter (clearing the region is its own action)"));
  Status s;
  auto store = r.acquire(&s);
  if (!store) return s;
  return store->PurgeMatching(glob, removed, progress);
}

Status WriteGate::purgeExpired(Region& r, uint64_t* removed) const {
  *removed = 0;
  if (readOnly()) return refuse(r, "purge of expired entries");
  Status s;
  auto store = r.acquire(&s);
  if (!store) return s;
  return store->PurgeExpired(removed);
}

Status WriteGate::clear(Region& r) const {
  if (readOnly()) return refuse(r, "clear");
  Status s;
  auto store = r.acquire(&s);
  if (!store) return s;
  return store->Clear();
}

Status CountMatching(Region& r, const std::string& glob, uint64_t* count,
                     const regioncache::Progress& progress) {
  *count = 0;
  Status s;
  auto store = r.acquire(&s);
  if (!store) return s;
  regioncache::ListOptions opts;
  opts.glob = glob;
  opts.limit = 10000;
  for (;;) {
    regioncache::ListPage page;
    s = store->List(opts, &page);
    if (!s.ok()) return s;
    *count += page.entries.size();
    if (progress && !progress(*count)) return Status::Cancelled("count cancelled");
    if (page.next_cursor.empty()) return Status::OK();
    opts.cursor = page.next_cursor;
  }
}

}  // namespace rcgui
