// Opening, creating and validating a region's POSIX shared-memory segment.
// Knows the header, not the entries: the store (ShmStore, shm_store.h) owns those.
#pragma once

#include <cstdint>
#include <string>

#include "regioncache/status.h"
#include "shm/shm_layout.h"

namespace regioncache::shm {

struct SegmentParams {
  std::string region;        // for messages
  std::string location;      // the LOCATION the segment is named after
  std::string name;          // "/regioncache.<uid>.<location>"
  bool create = true;        // false: attach to an existing segment only
  bool size_given = true;    // false (attach only): take the size from the segment
  uint64_t size = 0;
  uint64_t max_item_size = 0;
  uint64_t max_entries = 0;
  uint32_t cull_frequency = 3;
  bool recreate_on_mismatch = false;
  bool read_only = false;    // map PROT_READ, never create, initialise or repair
};

class Segment {
 public:
  Segment() = default;
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Maps the segment, creating and initialising it if absent. Serialised
  // against other openers with flock() on the segment, which the kernel
  // drops if the holder dies, so a creator killed mid-initialisation leaves
  // a segment without magic that the next opener initialises again.
  // A new segment is created exclusively (O_CREAT|O_EXCL, never through a
  // link); an existing one is used only if it is a regular file owned by
  // the effective uid with no access for group or others.
  Status Open(const SegmentParams& p);

  char* base() const { return base_; }
  uint64_t size() const { return size_; }
  Header* header() const { return reinterpret_cast<Header*>(base_); }
  // The segment's descriptor, kept open for size checks and the flock that
  // serialises lock breaking.
  int fd() const { return fd_; }
  // The geometry checked at open. Never read again from the segment, whose
  // header another process could damage.
  const Geometry& geometry() const { return geo_; }
  uint64_t max_item_size() const { return max_item_; }
  // The segment's current length (fstat), or -1 with errno set.
  int64_t CurrentSize() const;

  // Resets the arena, index and lists to empty (used at creation, by Clear
  // and when recovery finds the arena unusable), writing the geometry
  // checked at open back into the header. Caller holds the mutex or is the
  // only one with the segment.
  void ResetArena();
  // Writes magic, version and the geometry checked at open back into the
  // header (after damage to it).
  void WriteGeometry();

 private:
  Status Initialise(const SegmentParams& p, int fd);
  // The header's geometry fields (sizes, orders, offsets) from the copy
  // checked at open: WriteGeometry and ResetArena both restore them.
  void StoreGeometry();
  Status Validate(const SegmentParams& p);

  char* base_ = nullptr;
  uint64_t size_ = 0;
  int fd_ = -1;
  Geometry geo_{};
  uint64_t max_item_ = 0;
};

// Takes the segment's flock for a scope (blocking; EINTR retried). The
// unlock is explicit: a mapping keeps the open file description alive, so
// closing the descriptor alone would leave the lock held for as long as the
// segment stays mapped.
class FlockHold {
 public:
  explicit FlockHold(int fd);
  ~FlockHold();
  FlockHold(const FlockHold&) = delete;
  FlockHold& operator=(const FlockHold&) = delete;
  bool held() const { return held_; }
  int error() const { return error_; }  // flock's errno when not held

 private:
  int fd_;
  bool held_ = false;
  int error_ = 0;
};

// The region name must be usable as a file name in /dev/shm.
Status ValidateRegionName(const std::string& region);

}  // namespace regioncache::shm
