// The shared-memory arena reserved as it fills (issue 17, layout version 4):
// a fresh segment takes its header, index, visited map and one top-level
// block; the frontier moves a block at a time; a full arena evicts as
// before; a full /dev/shm fails the set cleanly (a real small tmpfs mounted
// on /dev/shm in a private mount namespace); a process killed while
// extending leaves a segment the next locker repairs.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/shm_store.h"
#include "regioncache/store.h"
#include "shm/shm_layout.h"
#include "support/test_support.h"

namespace regioncache {
namespace {

using Opts = std::map<std::string, std::string>;
using testing::ValueFor;

constexpr uint64_t kMB = 1 << 20;

class ShmFrontierTest : public ::testing::Test {
 public:
  std::unique_ptr<Store> Open(Opts opts) {
    std::unique_ptr<Store> s;
    Status st = OpenShmStore(StoreSpec{"t", "shm", name_, opts}, &s);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }
  std::string Path() const { return "/dev/shm" + ShmSegmentName(name_); }
  // The segment's bytes that hold memory (tmpfs pages allocated).
  uint64_t Resident() const {
    struct stat st;
    if (stat(Path().c_str(), &st) != 0) return 0;
    return uint64_t(st.st_blocks) * 512;
  }
  static uint64_t Extra(Store* s, const std::string& name) {
    Stats st;
    EXPECT_TRUE(s->GetStats(&st).ok());
    for (const auto& [k, v] : st.extra)
      if (k == name) return std::stoull(v);
    ADD_FAILURE() << "no " << name << " in stats";
    return 0;
  }
  // Everything listed reads back whole; the listing agrees with the count.
  static void ExpectConsistent(Store* s, const std::string& when) {
    ListOptions lo;
    lo.limit = 1000000;
    ListPage page;
    ASSERT_TRUE(s->List(lo, &page).ok()) << when;
    Stats st;
    ASSERT_TRUE(s->GetStats(&st).ok()) << when;
    ASSERT_EQ(page.entries.size(), st.entries) << when;
    ASSERT_LE(st.bytes_used, st.capacity) << when;
    Value v;
    for (const auto& e : page.entries) {
      ASSERT_TRUE(s->Get(e.key, &v).ok()) << when << ": " << e.key;
      ASSERT_EQ(v.data, ValueFor(e.key, v.data.size())) << when << ": torn value for " << e.key;
    }
  }
  // A raw mapping of the segment, as another process has.
  char* MapRaw(size_t* size) {
    int fd = shm_open(ShmSegmentName(name_).c_str(), O_RDWR, 0);
    if (fd < 0) return nullptr;
    struct stat st;
    fstat(fd, &st);
    *size = size_t(st.st_size);
    void* m = mmap(nullptr, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return m == MAP_FAILED ? nullptr : static_cast<char*>(m);
  }

  testing::ScratchShmRegion region_{
      std::string("gfront-") + ::testing::UnitTest::GetInstance()->current_test_info()->name()};
  const std::string& name_ = region_.name();
  testing::LogCapture log_;
};

TEST_F(ShmFrontierTest, FreshSegmentReservesLittleAndGrowsAsItFills) {
  auto s = Open({{"SIZE", "64MB"}, {"MAX_ITEM_SIZE", "64KB"}});
  // Header 8 KB + buckets 2 MB (one a 256 bytes) + visited map 0.5 MB + the
  // first top-level block (128 KB).
  uint64_t fresh = Resident();
  EXPECT_LT(fresh, 3 * kMB) << "a fresh 64 MB segment";
  EXPECT_EQ(Extra(s.get(), "arena_reserved"), 128u * 1024);
  // 1000 values of 20 KB (32 KB blocks): about 32 MB of blocks.
  for (int i = 0; i < 1000; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 20000), kEncBytes, kNever).ok()) << i;
    if (i == 499) {
      uint64_t half = Resident();
      EXPECT_GT(half, fresh + 15 * kMB);
      EXPECT_LT(half, fresh + 18 * kMB);
    }
  }
  uint64_t full = Resident();
  EXPECT_GT(full, fresh + 31 * kMB);
  EXPECT_LT(full, fresh + 34 * kMB);
  uint64_t reserved = Extra(s.get(), "arena_reserved");
  EXPECT_EQ(reserved, 1000u * 32 * 1024) << "a 128 KB step every fourth set";
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 1000u);
  EXPECT_EQ(st.evictions, 0u) << "the arena grows before anything is evicted";
  ExpectConsistent(s.get(), "after filling");
  // Another process sees the grown arena (its readers load the frontier).
  testing::ChildEnd e = testing::RunInChild([&] {
    std::unique_ptr<Store> c;
    if (!OpenShmStore(StoreSpec{"t", "shm", name_, {{"CREATE", "false"}}}, &c).ok()) return 2;
    Value v;
    if (!c->Get("k999", &v).ok() || v.data != ValueFor("k999", 20000)) return 3;
    return c->Set("child", ValueFor("child", 30000), kEncBytes, kNever).ok() ? 0 : 4;
  });
  ASSERT_EQ(e, testing::ChildEnd::kOk) << testing::ChildEndName(e);
  Value v;
  ASSERT_TRUE(s->Get("child", &v).ok());
  // Clear keeps what is reserved (the pages stay the segment's).
  ASSERT_TRUE(s->Clear().ok());
  EXPECT_EQ(Extra(s.get(), "arena_reserved"), reserved + 128 * 1024);
  ASSERT_TRUE(s->Set("after", "clear", kEncBytes, kNever).ok());
  ASSERT_TRUE(s->Get("after", &v).ok());
}

TEST_F(ShmFrontierTest, FullArenaEvictsAsBefore) {
  auto s = Open({{"SIZE", "4MB"}, {"MAX_ITEM_SIZE", "64KB"}});
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  for (int i = 0; i < 2000; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 5000 + i % 7 * 1000), kEncBytes, kNever).ok()) << i;
  }
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_GT(st.evictions, 1000u);
  EXPECT_EQ(Extra(s.get(), "arena_reserved"), st.capacity) << "the whole arena, and no more";
  EXPECT_LE(Resident(), 4 * kMB);
  Value v;
  for (int i = 1990; i < 2000; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(s->Get(k, &v).ok()) << k << " (the newest are kept)";
  }
  ExpectConsistent(s.get(), "after evicting");
}

TEST_F(ShmFrontierTest, OlderLayoutIsRefusedAsAMismatch) {
  { auto s = Open({{"SIZE", "4MB"}, {"MAX_ITEM_SIZE", "64KB"}}); }
  size_t size = 0;
  char* raw = MapRaw(&size);
  ASSERT_NE(raw, nullptr);
  reinterpret_cast<shm::Header*>(raw)->layout_version = 3;
  munmap(raw, size);
  std::unique_ptr<Store> s;
  Status st = OpenShmStore(StoreSpec{"t", "shm", name_, {{"SIZE", "4MB"}, {"MAX_ITEM_SIZE", "64KB"}}}, &s);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("layout version 3, this build uses 4"), std::string::npos)
      << st.message();
}

TEST_F(ShmFrontierTest, DamagedFrontierIsRepairedNotFollowed) {
  auto s = Open({{"SIZE", "8MB"}, {"MAX_ITEM_SIZE", "64KB"}});
  for (int i = 0; i < 50; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 20000), kEncBytes, kNever).ok());
  }
  uint64_t reserved = Extra(s.get(), "arena_reserved");
  size_t size = 0;
  char* raw = MapRaw(&size);
  ASSERT_NE(raw, nullptr);
  auto* h = reinterpret_cast<shm::Header*>(raw);
  for (uint64_t bad : {uint64_t(12345), h->arena_size + 131072, uint64_t(0)}) {
    h->frontier = bad;
    Value v;
    // A reader does not follow it (retries, then the locked path repairs).
    ASSERT_TRUE(s->Get("k7", &v).ok());
    EXPECT_EQ(v.data, ValueFor("k7", 20000));
    EXPECT_EQ(h->frontier, reserved) << "written back from this process's copy";
  }
  EXPECT_TRUE(log_.Contains("damaged frontier")) << log_.Text();
  ExpectConsistent(s.get(), "after the repairs");
  munmap(raw, size);
}

// A full /dev/shm: a tmpfs of 6 MB mounted on /dev/shm in a private mount
// namespace of a forked child (root or a user namespace is needed; the test
// is skipped without either). The segment is 64 MB: the extension that
// finds no room fails its set cleanly, later sets evict within what is
// reserved, and nothing raises SIGBUS.
TEST_F(ShmFrontierTest, FullDevShmFailsTheSetCleanlyThenEvicts) {
  int status = 0;
  std::string out = testing::ChildOutput([&]() -> std::string {
    if (unshare(CLONE_NEWNS) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
      return "skip: unshare: " + std::string(strerror(errno));
    // Private first: the tmpfs must never appear in the host's /dev/shm.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return "skip: private mounts: " + std::string(strerror(errno));
    if (mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=6m,mode=1777") != 0)
      return "skip: mount tmpfs: " + std::string(strerror(errno));
    std::unique_ptr<Store> s;
    Status st = OpenShmStore(
        StoreSpec{"t", "shm", name_, {{"SIZE", "64MB"}, {"MAX_ITEM_SIZE", "64KB"}}}, &s);
    if (!st.ok()) return "open: " + st.ToString();
    int stored = 0;
    Status failed;
    for (int i = 0; i < 1000 && failed.ok(); ++i) {
      std::string k = "k" + std::to_string(i);
      Status w = s->Set(k, ValueFor(k, 20000), kEncBytes, kNever);
      if (w.ok()) ++stored;
      else failed = w;
    }
    if (failed.ok()) return "1000 sets of 20 KB fit in a 6 MB /dev/shm";
    if (!failed.IsIOError() || failed.message().find("/dev/shm is full") == std::string::npos ||
        failed.message().find("'t'") == std::string::npos)
      return "failed set: " + failed.ToString();
    if (!log_.Contains("region 't' (shm): cannot reserve")) return "log: " + log_.Text();
    if (stored < 50) return "only " + std::to_string(stored) + " stored";
    // The sets after it make room by evicting within the reserved arena.
    for (int i = 1000; i < 1200; ++i) {
      std::string k = "k" + std::to_string(i);
      if (Status w = s->Set(k, ValueFor(k, 20000), kEncBytes, kNever); !w.ok())
        return "set after: " + w.ToString();
    }
    Stats stats;
    if (!s->GetStats(&stats).ok() || stats.evictions < 150)
      return "evictions " + std::to_string(stats.evictions);
    Value v;
    for (int i = 1190; i < 1200; ++i) {
      std::string k = "k" + std::to_string(i);
      if (!s->Get(k, &v).ok() || v.data != ValueFor(k, 20000)) return "lost " + k;
    }
    ListOptions lo;
    lo.limit = 100000;
    ListPage page;
    if (!s->List(lo, &page).ok() || page.entries.size() != stats.entries) return "listing";
    return "ok " + std::to_string(stored);
  }, &status);
  if (out.rfind("skip", 0) == 0) GTEST_SKIP() << out << " (needs root or user namespaces)";
  ASSERT_TRUE(WIFEXITED(status)) << "the child died: status " << status << ", said " << out;
  ASSERT_EQ(out.substr(0, 3), "ok ") << out;
}

// The states a writer killed inside Extend can leave, made by a child that
// holds the writers' (robust) mutex through a raw mapping and dies: the next
// locker gets EOWNERDEAD and rebuilds up to the frontier.
// stage 1: the new block's header written; 2: and the frontier moved;
// 3: the header written and the block pushed on a free list, the frontier
// not moved (the other order a writer could use).
void CrashInExtendThenRepair(ShmFrontierTest* t, const std::string& name, int stage) {
  auto s = t->Open({{"SIZE", "8MB"}, {"MAX_ITEM_SIZE", "64KB"}});
  for (int i = 0; i < 8; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 30000), kEncBytes, kNever).ok());
  }
  const uint64_t before = ShmFrontierTest::Extra(s.get(), "arena_reserved");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fd = shm_open(ShmSegmentName(name).c_str(), O_RDWR, 0);
    struct stat st;
    fstat(fd, &st);
    char* raw = static_cast<char*>(
        mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    auto* h = reinterpret_cast<shm::Header*>(raw);
    if (pthread_mutex_lock(&h->mutex) != 0) _exit(2);
    uint64_t f = h->frontier, step = uint64_t(1) << h->max_order;
    if (posix_fallocate(fd, off_t(h->arena_off + f), off_t(step)) != 0) _exit(3);
    auto* fb = reinterpret_cast<shm::FreeBlock*>(raw + h->arena_off + f);
    fb->head.state = shm::kStateFree;
    fb->head.order = h->max_order;
    fb->prev = fb->next = 0;
    if (stage == 2) h->frontier = f + step;
    if (stage == 3) {
      fb->next = h->free_heads[h->max_order];
      h->free_heads[h->max_order] = h->arena_off + f;
    }
    _exit(0);  // dies holding the lock
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // The next writer recovers, and the region goes on growing correctly.
  ASSERT_TRUE(s->Set("after", ValueFor("after", 30000), kEncBytes, kNever).ok());
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  uint64_t recoveries = 0;
  for (auto& [k, v] : st.extra)
    if (k == "recoveries") recoveries = std::stoull(v);
  EXPECT_EQ(recoveries, 1u);
  EXPECT_EQ(st.entries, 9u);
  // Stage 2 left a reserved free block inside the frontier: "after" went
  // there, without another step. Stages 1 and 3 left the frontier where it
  // was: "after" took the next step (over the block they half made).
  EXPECT_EQ(ShmFrontierTest::Extra(s.get(), "arena_reserved"), before + 128 * 1024);
  ShmFrontierTest::ExpectConsistent(s.get(), "after the recovery");
  for (int i = 0; i < 200; ++i) {
    std::string k = "more" + std::to_string(i);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 30000), kEncBytes, kNever).ok());
  }
  ShmFrontierTest::ExpectConsistent(s.get(), "after growing on");
}

TEST_F(ShmFrontierTest, KilledAfterWritingTheNewHeader) { CrashInExtendThenRepair(this, name_, 1); }
TEST_F(ShmFrontierTest, KilledAfterMovingTheFrontier) { CrashInExtendThenRepair(this, name_, 2); }
TEST_F(ShmFrontierTest, KilledAfterPushingBeforeMoving) { CrashInExtendThenRepair(this, name_, 3); }

// Writers killed with SIGKILL while the region grows (every other set
// extends the arena), 30 rounds: the survivor finds every entry whole or
// missing, the frontier valid, and the lock usable.
TEST_F(ShmFrontierTest, KillNineWhileGrowing) {
  auto s = Open({{"SIZE", "96MB"}, {"MAX_ITEM_SIZE", "64KB"}});
  // 1200 keys of 40-48 KB values, each in a 64 KB block (two to a 128 KB
  // step): about 75 MB when all are written. Made here once; the writers
  // store prefixes (the survivor checks them by key), so they spend their
  // time in the store, most of it holding the lock.
  auto [keys, full] = testing::MakeKeyedValues(1200, 48000);
  testing::KillNineRounds kills(17, std::chrono::microseconds(2000),
                               std::chrono::microseconds(20000));
  for (int round = 0; round < 30; ++round) {
    std::string killed = kills.Round([&](const testing::KillNineRounds::Ready& ready) {
      std::unique_ptr<Store> c;
      if (!OpenShmStore(StoreSpec{"t", "shm", name_, {{"CREATE", "false"}}}, &c).ok()) _exit(2);
      std::mt19937 r(getpid());
      ready();
      for (size_t n = size_t(round) * 40;; ++n) {
        size_t j = n % keys.size();
        c->Set(keys[j], std::string_view(full[j]).substr(0, 40000 + r() % 8000), kEncBytes,
               kNever);
      }
    });
    ASSERT_EQ(killed, "") << "round " << round;
    ASSERT_NO_FATAL_FAILURE(ExpectConsistent(s.get(), "round " + std::to_string(round)));
    uint64_t f = Extra(s.get(), "arena_reserved");
    ASSERT_EQ(f % (128 * 1024), 0u) << "round " << round;
    ASSERT_GE(Resident(), f) << "every reserved byte is backed (round " << round << ")";
    ASSERT_TRUE(s->Set("survivor", ValueFor("survivor", 1000), kEncBytes, kNever).ok());
  }
  EXPECT_GT(Extra(s.get(), "arena_reserved"), 16 * kMB) << "the region grew";
  EXPECT_GT(Extra(s.get(), "recoveries"), 5u);
}

}  // namespace
}  // namespace regioncache
