// The single place every write of the app goes through. In read-only mode
// each write is refused here, whatever the UI shows, so a forgotten disabled
// button cannot write.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "region.h"
#include "regioncache/store.h"

namespace rcgui {

class WriteGate {
 public:
  explicit WriteGate(bool read_only = false) : read_only_(read_only) {}

  bool readOnly() const { return read_only_.load(); }
  void setReadOnly(bool on) { read_only_.store(on); }

  // Each returns InvalidArgument naming the region and the refused action in
  // read-only mode. They may block: call them from workers.
  regioncache::Status deleteKeys(Region& r, const std::vector<std::string>& keys,
                                 uint64_t* deleted) const;
  // glob must not be empty (use clear() to empty a region).
  regioncache::Status purgeMatching(Region& r, const std::string& glob, uint64_t* removed,
                                    const regioncache::Progress& progress) const;
  regioncache::Status purgeExpired(Region& r, uint64_t* removed) const;
  regioncache::Status clear(Region& r) const;

 private:
  regioncache::Status refuse(const Region& r, const char* what) const;

  std::atomic<bool> read_only_;
};

// Counts the live entries matching glob (the purge preview). Reads only.
regioncache::Status CountMatching(Region& r, const std::string& glob, uint64_t* count,
                                  const regioncache::Progress& progress);

}  // namespace rcgui
