// A region the app shows: its spec and, once opened, its store. Shared by
// the UI thread and the workers (stats refresh, key loading, purges) through
// std::shared_ptr; the store itself is thread-safe (store.h), this class
// only guards the lazy open.
#pragma once

#include <memory>
#include <mutex>

#include "region_spec.h"
#include "regioncache/store.h"

namespace rcgui {

class Region {
 public:
  explicit Region(RegionSpec spec) : spec_(std::move(spec)) {}
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  const RegionSpec& spec() const { return spec_; }

  // Opens the store on first use and returns it; on failure returns null and
  // *error names the region and what failed. A failed open is retried on the
  // next call (the server may be back, the directory recreated). May block:
  // call it from a worker, never from the UI thread. A store opened in the
  // other mode than the app's current one (SetStoresReadOnly) is reopened.
  std::shared_ptr<regioncache::Store> acquire(regioncache::Status* error);

  // Forgets the open store, so that the next acquire opens it again (after
  // an error that suggests the segment was replaced, say).
  void forgetStore();

 private:
  const RegionSpec spec_;
  std::mutex mu_;
  std::shared_ptr<regioncache::Store> store_;  // guarded by mu_
  bool store_read_only_ = false;               // guarded by mu_: how store_ was opened
};

// The app's read-only mode, for every region: stores are opened read-only
// while it is on (a shared-memory store then maps its segment read-only and
// never repairs what it finds damaged). Any thread.
void SetStoresReadOnly(bool on);
bool StoresReadOnly();

using RegionPtr = std::shared_ptr<Region>;

// The message to show for a failed status: the store's message already names
// the region; for the rare one that does not, prefix it.
QString StatusText(const Region& r, const regioncache::Status& s);

// Stores of several servers answer GetStats while some servers are down and
// say so in Stats::servers. Returns
// the message naming the region and each server down, or "" when none is.
QString DownServersText(const Region& r, const regioncache::Stats& stats);

}  // namespace rcgui
