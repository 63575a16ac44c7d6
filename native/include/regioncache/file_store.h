// The file store: one directory per region, one file per entry, shared by
// every process of the user on this host that names the same directory.
// On-disk format: native/file/FORMAT.md.
#pragma once

#include <memory>

#include "regioncache/store.h"

namespace regioncache {

// spec.location is a directory, created (mode 0700, with its parents) if
// missing, resolved once (a link as LOCATION is followed at open, none inside
// it ever), and refused unless it, its shard directories and its ledger
// belong to the effective uid and are not writable by group or others
// (FORMAT.md). Options:
//   MAX_SIZE           bound on the bytes of all entry files (default 1GB)
//   MAX_ITEM_SIZE      largest key + value, before compression (default 64MB,
//                      and never above MAX_SIZE)
//   MAX_ENTRIES        Django-style entry bound (default: none, bytes bound only)
//   CULL_FREQUENCY     Django-style: cull 1/N of the entries at MAX_ENTRIES (0: all)
//   COMPRESS_MIN_SIZE  zstd-compress values of at least this many bytes
//                      (default 0: never)
//   COMPRESS_LEVEL     zstd level, 1..19 (default 3)
//   FSYNC              flush each entry file and its directory before a write
//                      returns (default False)
Status OpenFileStore(const StoreSpec& spec, std::unique_ptr<Store>* out);

}  // namespace regioncache
