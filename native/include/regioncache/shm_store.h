// The shared-memory store: one POSIX shared-memory segment per region, shared
// by every process of the user on this host. Layout: native/shm/LAYOUT.md.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "regioncache/store.h"

namespace regioncache {

// spec.location is the region name ([A-Za-z0-9._-], 1..200 bytes). Options:
//   SIZE            segment size, all metadata included (default 64MB)
//   MAX_ITEM_SIZE   largest key + value + header (default 1MB)
//   MAX_ENTRIES     Django-style entry bound (default: none, bytes bound only)
//   CULL_FREQUENCY  Django-style: cull 1/N of the entries at MAX_ENTRIES (0: all)
//   ON_MISMATCH     "error" (default) or "recreate" when an existing segment
//                   has another layout version or size
//   CREATE          false: attach to an existing segment only
//   READ_ONLY       true: map it read-only; reads only, damage reported, never repaired
//   LOCK_TIMEOUT    seconds a writer waits for the lock before breaking it (default 10)
// An existing segment is used only if owned by the effective uid with mode
// 0600 (no group/other bits); it is created with O_EXCL and never through a
// link.
Status OpenShmStore(const StoreSpec& spec, std::unique_ptr<Store>* out);

// The segment name a region maps to: "/regioncache.<uid>.<region>".
std::string ShmSegmentName(const std::string& region);

// The regions of the current user that exist on this host (from /dev/shm).
Status ListShmRegions(std::vector<std::string>* regions);

// Unlinks a region's segment. Processes that have it open keep their mapping.
Status RemoveShmRegion(const std::string& region);

}  // namespace regioncache
