// Opening, creating and validating a region's segment (shm_segment.h), the
// arena's initial carving (ResetArena), and the region helpers of
// regioncache/shm_store.h: segment names, listing and removing regions.
#include "shm/shm_segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pwd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "regioncache/clock.h"
#include "regioncache/shm_store.h"

namespace regioncache::shm {
namespace {

std::string HumanSize(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  double v = static_cast<double>(n);
  while (v >= 1024 && u < 4 && n % 1024 == 0) {
    v /= 1024;
    n /= 1024;
    ++u;
  }
  return std::to_string(n) + " " + units[u];
}

// Closes a descriptor unless released.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

std::string OctalMode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::string UserName(uid_t uid) {
  std::string out = std::to_string(uid);
  struct passwd pw, *res = nullptr;
  char buf[1024];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res) out += " (" + std::string(res->pw_name) + ")";
  return out;
}

}  // namespace

uint32_t TopBlockOrder(const Geometry& g, uint64_t pos) {
  uint32_t order = g.max_order;
  while (order > kMinOrder &&
         ((pos & (BlockSize(order) - 1)) != 0 || pos + BlockSize(order) > g.arena_size))
    --order;
  return order;
}

bool ComputeGeometry(uint64_t size, uint64_t max_item, Geometry* g) {
  if (max_item == 0 || max_item > (uint64_t(1) << 36)) return false;
  uint64_t block = std::bit_ceil(kItemHeader + max_item);
  uint32_t order = static_cast<uint32_t>(std::countr_zero(block));
  if (order < kMinOrder) order = kMinOrder;
  g->max_order = order;
  if (size < kHeaderBytes + 4 * BlockSize(kMinOrder)) return false;
  // About one bucket per 256 bytes of segment: chains stay short for the
  // small entries that dominate counts.
  uint64_t nb = std::bit_floor(size / 256);
  if (nb < 256) nb = 256;
  g->nbuckets = nb;
  g->buckets_off = kHeaderBytes;
  uint64_t after_buckets = g->buckets_off + nb * 8;
  if (after_buckets >= size) return false;
  // The visited map takes one byte per minimum block of the arena.
  uint64_t rest = size - after_buckets;
  uint64_t unit = BlockSize(kMinOrder);
  uint64_t arena = (rest - 4096) / (unit + 1) * unit;  // leaves room for the map and alignment
  g->visited_off = after_buckets;
  uint64_t arena_off = g->visited_off + (arena >> kMinOrder);
  arena_off = (arena_off + 4095) & ~uint64_t(4095);
  if (arena_off >= size) return false;
  uint64_t fit = (size - arena_off) / unit * unit;
  if (fit < arena) arena = fit;
  g->arena_off = arena_off;
  g->arena_size = arena;
  // The arena must hold at least two of the largest blocks, or eviction
  // could not make room for a maximal entry while another one is live.
  return arena >= 2 * BlockSize(order);
}

Status ValidateRegionName(const std::string& region) {
  if (region.empty() || region.size() > 200)
    return Status::InvalidArgument(
        RegionMessage(region, "a shared-memory region name must be 1 to 200 characters"));
  for (unsigned char c : region) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok)
      return Status::InvalidArgument(RegionMessage(
          region, "a shared-memory region name may hold only letters, digits, '.', '_' and '-'"));
  }
  if (region == "." || region == "..")
    return Status::InvalidArgument(RegionMessage(region, "not a valid region name"));
  return Status::OK();
}

Segment::~Segment() {
  if (base_) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

int64_t Segment::CurrentSize() const {
  struct stat st;
  if (fstat(fd_, &st) != 0) return -1;
  return static_cast<int64_t>(st.st_size);
}

FlockHold::FlockHold(int fd) : fd_(fd) {
  while (flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      error_ = errno;
      return;
    }
  }
  held_ = true;
}

FlockHold::~FlockHold() {
  if (held_) flock(fd_, LOCK_UN);
}

void Segment::StoreGeometry() {
  Header* h = header();
  const Geometry& g = geo_;
  h->segment_size = size_;
  h->max_item_size = max_item_;
  h->min_order = kMinOrder;
  h->max_order = g.max_order;
  h->buckets_off = g.buckets_off;
  h->nbuckets = g.nbuckets;
  h->visited_off = g.visited_off;
  h->arena_off = g.arena_off;
  h->arena_size = g.arena_size;
}

void Segment::WriteGeometry() {
  Header* h = header();
  h->layout_version = kLayoutVersion;
  h->header_bytes = kHeaderBytes;
  StoreGeometry();
  reinterpret_cast<std::atomic<uint64_t>*>(&h->magic)->store(kMagic, std::memory_order_release);
}

void Segment::ResetArena() {
  Header* h = header();
  const Geometry& g = geo_;
  StoreGeometry();
  std::memset(base_ + g.buckets_off, 0, g.nbuckets * 8);
  std::memset(base_ + g.visited_off, 0, g.arena_size >> kMinOrder);
  for (auto& f : h->free_heads) f = 0;
  h->entries = 0;
  h->bytes_used = 0;
  h->sieve_head = h->sieve_tail = h->sieve_hand = 0;
  h->next_expiry_ms = 0;
  h->last_sweep_ms = 0;
  // Carve the arena into the largest aligned blocks that fit, each on its
  // own free list. Offsets are relative to arena_off for alignment.
  uint64_t pos = 0;
  while (pos < g.arena_size) {
    uint32_t order = TopBlockOrder(g, pos);
    uint64_t off = g.arena_off + pos;
    auto* fb = reinterpret_cast<FreeBlock*>(base_ + off);
    fb->head.state = kStateFree;
    fb->head.order = order;
    fb->prev = 0;
    fb->next = h->free_heads[order];
    if (fb->next) reinterpret_cast<FreeBlock*>(base_ + fb->next)->prev = off;
    h->free_heads[order] = off;
    pos += BlockSize(order);
  }
}

static Status TooSmall(const SegmentParams& p) {
  return Status::InvalidArgument(RegionMessage(
      p.region, "SIZE " + HumanSize(p.size) + " is too small for MAX_ITEM_SIZE " +
                    HumanSize(p.max_item_size) +
                    " (the segment must hold the index and at least two of the largest entries)"));
}

Status Segment::Initialise(const SegmentParams& p, int fd) {
  Geometry g;
  if (!ComputeGeometry(p.size, p.max_item_size, &g)) return TooSmall(p);
  if (ftruncate(fd, static_cast<off_t>(p.size)) != 0) {
    int e = errno;
    return ErrnoStatus(p.region,
                       "cannot size shared-memory segment " + p.name + " to " + HumanSize(p.size), e);
  }
  // Reserve the pages now: on a full /dev/shm a sparse segment would raise
  // SIGBUS at the first write to a missing page, long after this open.
  if (int rc = posix_fallocate(fd, 0, static_cast<off_t>(p.size));
      rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
    return Status::IOError(RegionMessage(
        p.region, "cannot reserve " + HumanSize(p.size) + " for shared-memory segment " + p.name +
                      ": " + ErrnoText(rc) +
                      (rc == ENOSPC ? " (/dev/shm is full; lower SIZE or free space)" : "")));
  }
  void* m = mmap(nullptr, p.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    int e = errno;
    return ErrnoStatus(p.region, "cannot map " + p.name, e);
  }
  base_ = static_cast<char*>(m);
  size_ = p.size;
  geo_ = g;
  max_item_ = p.max_item_size;
  Header* h = header();
  // A fresh or half-initialised segment: zero the header and build it again.
  std::memset(static_cast<void*>(h), 0, kHeaderBytes);
  h->layout_version = kLayoutVersion;
  h->header_bytes = kHeaderBytes;
  StoreGeometry();  // from size_, max_item_ and geo_, set above
  h->created_ms = NowMs();
  h->max_entries = p.max_entries;
  h->cull_frequency = p.cull_frequency;
  new (&h->seq) std::atomic<uint64_t>(0);
  for (auto& s : h->stats) new (&s) StatSlot{};

  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(&h->mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0)
    return ErrnoStatus(p.region, "cannot create the segment's lock", rc);
  ResetArena();
  std::atomic_thread_fence(std::memory_order_release);
  reinterpret_cast<std::atomic<uint64_t>*>(&h->magic)->store(kMagic, std::memory_order_release);
  return Status::OK();
}

Status Segment::Validate(const SegmentParams& p) {
  const Header* h = header();
  auto mismatch = [&](const std::string& what) {
    return Status::InvalidArgument(RegionMessage(
        p.region, "shared-memory segment " + p.name + " " + what +
                      "; remove it (python -m regioncache drop-shm " + p.location +
                      ", or rm /dev/shm" + p.name + ") or set OPTIONS ON_MISMATCH='recreate'"));
  };
  if (h->magic != kMagic) return mismatch("is not a regioncache segment (bad magic number)");
  if (h->layout_version != kLayoutVersion)
    return mismatch("has layout version " + std::to_string(h->layout_version) +
                    ", this build uses " + std::to_string(kLayoutVersion));
  if (h->segment_size != size_ || h->header_bytes != kHeaderBytes)
    return mismatch("has a damaged header (size fields disagree with the segment)");
  Geometry g;
  if (!ComputeGeometry(h->segment_size, h->max_item_size, &g) || g.max_order != h->max_order ||
      g.nbuckets != h->nbuckets || g.buckets_off != h->buckets_off ||
      g.visited_off != h->visited_off || g.arena_off != h->arena_off ||
      g.arena_size != h->arena_size || h->min_order != kMinOrder)
    return mismatch("has a damaged header (geometry does not match its size)");
  geo_ = g;
  max_item_ = h->max_item_size;
  if (p.size_given && h->segment_size != p.size)
    return mismatch("exists with SIZE " + HumanSize(h->segment_size) + ", not the configured " +
                    HumanSize(p.size));
  if (p.size_given && h->max_item_size != p.max_item_size)
    return mismatch("exists with MAX_ITEM_SIZE " + HumanSize(h->max_item_size) +
                    ", not the configured " + HumanSize(p.max_item_size));
  return Status::OK();
}

Status Segment::Open(const SegmentParams& p) {
  const bool create = p.create && !p.read_only;
  if (create) {
    // Refuse impossible geometry before anything exists in /dev/shm.
    Geometry g;
    if (!ComputeGeometry(p.size, p.max_item_size, &g)) return TooSmall(p);
  }
  const std::string path = "/dev/shm" + p.name;
  const int mode = p.read_only ? O_RDONLY : O_RDWR;
  for (int attempt = 0; attempt < 2; ++attempt) {
    // Attach to an existing segment, or create one exclusively: never
    // O_CREAT alone, which would adopt a file someone else put there first.
    // glibc's shm_open adds O_NOFOLLOW; it is repeated here to say so.
    bool created = false;
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; ++tries) {
      fd = shm_open(p.name.c_str(), mode | O_NOFOLLOW, 0);
      if (fd >= 0 || errno != ENOENT || !create) break;
      fd = shm_open(p.name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
      if (fd >= 0) created = true;
      else if (errno != EEXIST) break;  // EEXIST: another opener won the race; attach
    }
    if (fd < 0) {
      int e = errno;
      if (e == ENOENT)
        return Status::NotFound(RegionMessage(p.region, "no shared-memory segment " + path));
      if (e == ELOOP)
        return Status::IOError(RegionMessage(
            p.region, "refusing shared-memory segment " + path +
                          ": it is a symbolic link (a segment is never opened through a link)"));
      return ErrnoStatus(p.region, "cannot open shared-memory segment " + path, e);
    }
    FdCloser closer{fd};
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int e = errno;
      return ErrnoStatus(p.region, "cannot stat " + path, e);
    }
    // Only a segment this user made is trusted: another local user who
    // created it first could read every value and plant entries.
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
      std::string why = !S_ISREG(st.st_mode)       ? "it is not a regular file"
                        : st.st_uid != geteuid()   ? "it is not owned by this process's user"
                                                   : "group or others may access it";
      return Status::IOError(RegionMessage(
          p.region, "refusing shared-memory segment " + path + ": owner uid " +
                        UserName(st.st_uid) + ", mode " + OctalMode(st.st_mode) + "; " + why +
                        " (expected owner uid " + UserName(geteuid()) +
                        ", mode 0600). It was not created by this site: find out who made it, "
                        "then remove it (rm " + path + ")"));
    }
    FlockHold lock(fd);
    if (!lock.held()) return ErrnoStatus(p.region, "cannot lock " + path, lock.error());
    if (fstat(fd, &st) != 0) {
      int e = errno;
      return ErrnoStatus(p.region, "cannot stat " + path, e);
    }
    uint64_t existing = static_cast<uint64_t>(st.st_size);
    Status s;
    if (existing == 0) {
      if (!create) {
        return Status::NotFound(
            RegionMessage(p.region, "shared-memory segment " + path + " is empty (never initialised)"));
      }
      s = Initialise(p, fd);
      // Leave nothing behind when a new segment could not be built (a full
      // /dev/shm, say): the next open starts clean.
      if (!s.ok()) {
        if (base_) munmap(base_, size_);
        base_ = nullptr;
        size_ = 0;
        if (created) shm_unlink(p.name.c_str());
        return s;
      }
      fd_ = closer.release();
      return s;
    }
    if (existing < kHeaderBytes) {
      s = Status::InvalidArgument(RegionMessage(
          p.region, "shared-memory segment " + path + " is too short to be a regioncache segment"));
    } else {
      void* m = mmap(nullptr, existing, p.read_only ? PROT_READ : PROT_READ | PROT_WRITE,
                     MAP_SHARED, fd, 0);
      if (m == MAP_FAILED) {
        int e = errno;
        return ErrnoStatus(p.region, "cannot map " + path, e);
      }
      base_ = static_cast<char*>(m);
      size_ = existing;
      if (header()->magic == 0 && create && (!p.size_given || existing == p.size)) {
        // The creator died before finishing: initialise it again.
        munmap(base_, size_);
        base_ = nullptr;
        s = Initialise(p, fd);
        if (s.ok()) fd_ = closer.release();
        return s;
      }
      s = Validate(p);
      if (s.ok()) {
        fd_ = closer.release();
        return s;
      }
      munmap(base_, size_);
      base_ = nullptr;
      size_ = 0;
    }
    if (!p.recreate_on_mismatch || !create || attempt > 0) return s;
    // Documented re-create: unlink the old segment (processes still mapping
    // it keep their copy until they reopen) and create a fresh one.
    shm_unlink(p.name.c_str());
  }
  return Status::IOError(RegionMessage(p.region, "could not re-create " + path));
}

}  // namespace regioncache::shm

namespace regioncache {

std::string ShmSegmentName(const std::string& region) {
  return "/regioncache." + std::to_string(getuid()) + "." + region;
}

Status ListShmRegions(std::vector<std::string>* regions) {
  regions->clear();
  std::string prefix = "regioncache." + std::to_string(getuid()) + ".";
  DIR* d = opendir("/dev/shm");
  if (!d) {
    int e = errno;
    return Status::IOError("cannot list /dev/shm: " + ErrnoText(e));
  }
  while (dirent* ent = readdir(d)) {
    std::string n = ent->d_name;
    if (n.size() > prefix.size() && n.compare(0, prefix.size(), prefix) == 0)
      regions->push_back(n.substr(prefix.size()));
  }
  closedir(d);
  return Status::OK();
}

Status RemoveShmRegion(const std::string& region) {
  Status s = shm::ValidateRegionName(region);
  if (!s.ok()) return s;
  std::string name = ShmSegmentName(region);
  if (shm_unlink(name.c_str()) != 0) {
    int e = errno;
    if (e == ENOENT) return Status::NotFound(RegionMessage(region, "no segment " + name));
    return ErrnoStatus(region, "cannot remove " + name, e);
  }
  return Status::OK();
}

}  // namespace regioncache
