// Tests of the shared-memory store against real POSIX shared memory, with
// real forked processes for sharing and kill -9 recovery.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/shm_store.h"
#include "regioncache/store.h"
#include "support/test_support.h"

namespace regioncache {
namespace {

using testing::ValueFor;

class ShmTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Open(std::map<std::string, std::string> opts = {}) {
    std::unique_ptr<Store> s;
    Status st = OpenShmStore(StoreSpec{"t", "shm", name_, opts}, &s);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }

  testing::ScratchShmRegion region_{
      std::string("gtest-") + ::testing::UnitTest::GetInstance()->current_test_info()->name()};
  const std::string& name_ = region_.name();
};

TEST_F(ShmTest, ExpiryIsCheckedOnRead) {
  auto s = Open();
  ASSERT_TRUE(s->Set("k", "v", 0, NowMs() + 150).ok());
  Value v;
  EXPECT_TRUE(s->Get("k", &v).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(s->Get("k", &v).IsNotFound());
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 0u);
  EXPECT_EQ(st.expirations, 1u);
}

TEST_F(ShmTest, BoundedMemoryEvictsAndKeepsHotEntries) {
  auto s = Open({{"SIZE", "2MB"}, {"MAX_ITEM_SIZE", "64KB"}});
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  uint64_t cap = st.capacity;
  EXPECT_LE(cap, 2u << 20);
  // A hot set read between inserts survives a flood of cold entries.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(s->Set("hot" + std::to_string(i), "v", 0, kNever).ok());
  Value v;
  for (int i = 0; i < 50000; ++i) {
    std::string k = "cold" + std::to_string(i);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 100 + i % 900), 0, kNever).ok());
    if (i % 100 == 0)
      for (int j = 0; j < 20; ++j) s->Get("hot" + std::to_string(j), &v);
    if (i % 1000 == 0) {
      ASSERT_TRUE(s->GetStats(&st).ok());
      ASSERT_LE(st.bytes_used, cap);
    }
  }
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_GT(st.evictions, 1000u);
  EXPECT_LE(st.bytes_used, cap);
  int hot = 0;
  for (int j = 0; j < 20; ++j) hot += s->Get("hot" + std::to_string(j), &v).ok();
  EXPECT_EQ(hot, 20);
  // Whatever survived is whole.
  ListOptions lo;
  lo.limit = 100000;
  ListPage page;
  ASSERT_TRUE(s->List(lo, &page).ok());
  EXPECT_EQ(page.entries.size(), st.entries);
  for (const auto& e : page.entries) {
    if (e.key.rfind("cold", 0) != 0) continue;
    ASSERT_TRUE(s->Get(e.key, &v).ok());
    EXPECT_EQ(v.data, ValueFor(e.key, v.data.size()));
  }
}

TEST_F(ShmTest, DjangoStyleCull) {
  auto s = Open({{"MAX_ENTRIES", "30"}});
  for (int i = 1; i < 50; ++i) ASSERT_TRUE(s->Set("cull" + std::to_string(i), "v", 0, kNever).ok());
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 29u);
  RemoveShmRegion(name_);
  auto z = Open({{"MAX_ENTRIES", "30"}, {"CULL_FREQUENCY", "0"}});
  for (int i = 1; i < 50; ++i) ASSERT_TRUE(z->Set("cull" + std::to_string(i), "v", 0, kNever).ok());
  ASSERT_TRUE(z->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 19u);
}

TEST_F(ShmTest, ExpiredEntriesAreEvictedBeforeLiveOnes) {
  auto s = Open({{"SIZE", "2MB"}, {"MAX_ITEM_SIZE", "64KB"}});
  // Old entries that never expire, each read once (SIEVE keeps visited ones
  // a round longer), then newer entries that expire almost at once.
  int live = 0;
  Stats st;
  for (;; ++live) {
    std::string k = "live" + std::to_string(live);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 1000), 0, kNever).ok());
    ASSERT_TRUE(s->GetStats(&st).ok());
    if (st.bytes_used > st.capacity / 2) break;
  }
  int64_t soon = NowMs() + 100;
  int shortlived = 0;
  for (;; ++shortlived) {
    std::string k = "short" + std::to_string(shortlived);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 1000), 0, soon).ok());
    ASSERT_TRUE(s->GetStats(&st).ok());
    if (st.bytes_used > st.capacity * 9 / 10) break;
  }
  ASSERT_EQ(st.evictions, 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  // Room for as many new entries as expired: every one of the old, live
  // entries stays, though SIEVE's hand starts at them (the oldest).
  for (int i = 0; i < shortlived; ++i) {
    std::string k = "new" + std::to_string(i);
    ASSERT_TRUE(s->Set(k, ValueFor(k, 1000), 0, kNever).ok());
  }
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.evictions, 0u);
  EXPECT_GE(st.expirations, static_cast<uint64_t>(shortlived));
  Value v;
  for (int i = 0; i <= live; ++i) {
    std::string k = "live" + std::to_string(i);
    ASSERT_TRUE(s->Get(k, &v).ok()) << k;
    EXPECT_EQ(v.data, ValueFor(k, 1000));
  }
}

TEST_F(ShmTest, CullTakesExpiredEntriesFirst) {
  auto s = Open({{"MAX_ENTRIES", "30"}});
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(s->Set("keep" + std::to_string(i), "v", 0, kNever).ok());
  int64_t soon = NowMs() + 50;
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(s->Set("short" + std::to_string(i), "v", 0, soon).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  // At the bound with 20 expired: they go, nothing live is culled.
  for (int i = 0; i < 15; ++i)
    ASSERT_TRUE(s->Set("new" + std::to_string(i), "v", 0, kNever).ok());
  Value v;
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(s->Get("keep" + std::to_string(i), &v).ok());
  for (int i = 0; i < 15; ++i) EXPECT_TRUE(s->Get("new" + std::to_string(i), &v).ok());
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 25u);
  EXPECT_EQ(st.evictions, 0u);
}

TEST_F(ShmTest, ListPagesWithCursorAndGlob) {
  auto s = Open();
  int64_t exp = NowMs() + 3600000;
  for (int i = 0; i < 2500; ++i)
    ASSERT_TRUE(s->Set((i % 2 ? "odd:" : "even:") + std::to_string(i), ValueFor("x", i % 300),
                       kEncBytes, i % 3 ? exp : kNever)
                    .ok());
  std::set<std::string> seen;
  ListOptions lo;
  lo.limit = 100;
  int pages = 0;
  for (;;) {
    ListPage page;
    ASSERT_TRUE(s->List(lo, &page).ok());
    ++pages;
    for (const auto& e : page.entries) {
      EXPECT_TRUE(seen.insert(e.key).second) << "listed twice: " << e.key;
      int i = std::stoi(e.key.substr(e.key.find(':') + 1));
      EXPECT_EQ(e.value_size, uint64_t(i % 300));
      EXPECT_EQ(e.expires_ms, i % 3 ? exp : kNever);
      EXPECT_GT(e.stored_ms, 0);
    }
    if (page.next_cursor.empty()) break;
    lo.cursor = page.next_cursor;
  }
  EXPECT_EQ(seen.size(), 2500u);
  EXPECT_GE(pages, 25);
  ListOptions g;
  g.glob = "odd:1?";
  g.limit = 10000;
  ListPage page;
  ASSERT_TRUE(s->List(g, &page).ok());
  EXPECT_EQ(page.entries.size(), 5u);  // odd:11, 13, 15, 17, 19
  ListOptions bad;
  bad.cursor = "not-a-number";
  EXPECT_EQ(s->List(bad, &page).code(), Status::Code::kInvalidArgument);
}

TEST_F(ShmTest, PurgeExpiredMatchingAndClear) {
  auto s = Open();
  for (int i = 0; i < 300; ++i)
    ASSERT_TRUE(s->Set("k" + std::to_string(i), "v", 0, i < 100 ? NowMs() - 1 : kNever).ok());
  uint64_t n = 0;
  ASSERT_TRUE(s->PurgeExpired(&n).ok());
  EXPECT_EQ(n, 100u);
  ASSERT_TRUE(s->PurgeMatching("k1*", &n).ok());
  EXPECT_EQ(n, 100u);  // k1, k10..k19 expired already; k100..k199 remain -> 100
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 100u);
  ASSERT_TRUE(s->Clear().ok());
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 0u);
  EXPECT_EQ(st.bytes_used, 0u);
}

TEST_F(ShmTest, OptionsAreValidated) {
  std::unique_ptr<Store> s;
  Status st = OpenShmStore(StoreSpec{"t", "shm", name_, {{"SIZE", "12XB"}}}, &s);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("SIZE"), std::string::npos);
  EXPECT_NE(st.message().find("12XB"), std::string::npos);
  st = OpenShmStore(StoreSpec{"t", "shm", name_, {{"COLOUR", "red"}}}, &s);
  EXPECT_NE(st.message().find("unknown option COLOUR"), std::string::npos) << st.message();
  st = OpenShmStore(StoreSpec{"t", "shm", name_, {{"SIZE", "-5"}}}, &s);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  st = OpenShmStore(StoreSpec{"t", "shm", name_, {{"SIZE", "1MB"}, {"MAX_ITEM_SIZE", "1MB"}}}, &s);
  EXPECT_NE(st.message().find("too small"), std::string::npos) << st.message();
  st = OpenShmStore(StoreSpec{"t", "shm", "bad/name", {}}, &s);
  EXPECT_NE(st.message().find("LOCATION"), std::string::npos) << st.message();
  st = OpenShmStore(StoreSpec{"t", "shm", name_, {{"CREATE", "false"}}}, &s);
  EXPECT_TRUE(st.IsNotFound()) << st.ToString();
}

TEST_F(ShmTest, SizeMismatchIsAnErrorOrARecreate) {
  {
    auto s = Open({{"SIZE", "16MB"}});
    ASSERT_TRUE(s->Set("k", "v", 0, kNever).ok());
  }
  std::unique_ptr<Store> s;
  Status st = OpenShmStore(StoreSpec{"t", "shm", name_, {{"SIZE", "32MB"}}}, &s);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("SIZE 16 MiB"), std::string::npos) << st.message();
  // Attaching without a size takes the segment as it is.
  ASSERT_TRUE(OpenShmStore(StoreSpec{"t", "shm", name_, {{"CREATE", "false"}}}, &s).ok());
  Value v;
  EXPECT_TRUE(s->Get("k", &v).ok());
  ASSERT_TRUE(
      OpenShmStore(StoreSpec{"t", "shm", name_, {{"SIZE", "32MB"}, {"ON_MISMATCH", "recreate"}}}, &s)
          .ok());
  Stats stats;
  ASSERT_TRUE(s->GetStats(&stats).ok());
  EXPECT_EQ(stats.entries, 0u);
  EXPECT_GT(stats.capacity, 16u << 20);
}

TEST_F(ShmTest, ForeignSegmentIsRefused) {
  std::string seg = ShmSegmentName(name_);
  int fd = shm_open(seg.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  char junk[4096];
  std::memset(junk, 0x5a, sizeof junk);
  ASSERT_EQ(write(fd, junk, sizeof junk), ssize_t(sizeof junk));
  close(fd);
  std::unique_ptr<Store> s;
  Status st = OpenShmStore(StoreSpec{"t", "shm", name_, {}}, &s);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("not a regioncache segment"), std::string::npos) << st.message();
}

TEST_F(ShmTest, SegmentIsPrivateToTheUser) {
  auto s = Open();
  struct stat st;
  ASSERT_EQ(stat(("/dev/shm" + ShmSegmentName(name_)).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::vector<std::string> regions;
  ASSERT_TRUE(ListShmRegions(&regions).ok());
  EXPECT_NE(std::find(regions.begin(), regions.end(), name_), regions.end());
}

TEST_F(ShmTest, DamagedArenaIsRepairedNotFatal) {
  auto s = Open({{"SIZE", "4MB"}, {"MAX_ITEM_SIZE", "256KB"}});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(s->Set("k" + std::to_string(i), "v", 0, kNever).ok());
  // Scribble over the index and part of the arena from outside the store.
  int fd = shm_open(ShmSegmentName(name_).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  char* m = static_cast<char*>(mmap(nullptr, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(m, MAP_FAILED);
  close(fd);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) m[8192 + rng() % ((4 << 20) - 8192)] = static_cast<char>(rng());
  munmap(m, 4 << 20);
  // Every call answers (a miss, a value, or a clear error); none crashes,
  // and the region is usable afterwards.
  Value v;
  for (int i = 0; i < 1000; ++i) {
    std::string k = "k" + std::to_string(i);
    Status st = s->Get(k, &v);
    EXPECT_TRUE(st.ok() || st.IsNotFound()) << st.ToString();
    s->Set(k, "new", 0, kNever);
  }
  ListPage page;
  s->List(ListOptions{}, &page);
  ASSERT_TRUE(s->Clear().ok());
  ASSERT_TRUE(s->Set("after", "ok", 0, kNever).ok());
  ASSERT_TRUE(s->Get("after", &v).ok());
  EXPECT_EQ(v.data, "ok");
}

TEST_F(ShmTest, ProcessesShareOneRegion) {
  auto s = Open();
  ASSERT_TRUE(s->Set("from-parent", "p", 0, kNever).ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::unique_ptr<Store> c;
    if (!OpenShmStore(StoreSpec{"t", "shm", name_, {}}, &c).ok()) _exit(2);
    Value v;
    if (!c->Get("from-parent", &v).ok() || v.data != "p") _exit(3);
    if (!c->Set("from-child", "c", 0, kNever).ok()) _exit(4);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  Value v;
  ASSERT_TRUE(s->Get("from-child", &v).ok());
  EXPECT_EQ(v.data, "c");
}

// A writer killed with SIGKILL at a random moment, 50 times: the survivors
// find every entry whole or missing, the lock usable, and the counts right.
TEST_F(ShmTest, KillNineWriterFiftyRounds) {
  auto s = Open({{"SIZE", "2MB"}, {"MAX_ITEM_SIZE", "32KB"}});
  testing::KillNineRounds kills(42, std::chrono::microseconds(1000),
                               std::chrono::microseconds(10000));
  for (int round = 0; round < 50; ++round) {
    std::string killed = kills.Round([&](const testing::KillNineRounds::Ready& ready) {
      std::unique_ptr<Store> c;
      if (!OpenShmStore(StoreSpec{"t", "shm", name_, {{"CREATE", "false"}}}, &c).ok()) _exit(2);
      std::mt19937 r(getpid());
      // Values are prefixes of one precomputed buffer per key, so the writer
      // spends most of its time inside the store (holding the lock).
      auto [keys, full] = testing::MakeKeyedValues(500, 20000);
      ready();
      for (;;) {
        size_t j = r() % keys.size();
        switch (r() % 4) {
          case 0: c->Delete(keys[j]); break;
          default:
            c->Set(keys[j], std::string_view(full[j]).substr(0, r() % 20000), kEncBytes, kNever);
        }
      }
    });
    ASSERT_EQ(killed, "") << "round " << round;
    // The survivor: everything listed reads back whole; stats agree.
    ListOptions lo;
    lo.limit = 1000000;
    ListPage page;
    ASSERT_TRUE(s->List(lo, &page).ok()) << "round " << round;
    Stats st;
    ASSERT_TRUE(s->GetStats(&st).ok());
    ASSERT_EQ(page.entries.size(), st.entries) << "round " << round;
    ASSERT_LE(st.bytes_used, st.capacity);
    Value v;
    for (const auto& e : page.entries) {
      ASSERT_TRUE(s->Get(e.key, &v).ok()) << e.key;
      if (e.key == "survivor") {
        ASSERT_EQ(v.data, "yes");
        continue;
      }
      ASSERT_EQ(v.data, ValueFor(e.key, v.data.size())) << "torn value for " << e.key;
    }
    ASSERT_TRUE(s->Set("survivor", "yes", 0, kNever).ok());
  }
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  uint64_t recoveries = 0;
  for (auto& [k, v] : st.extra)
    if (k == "recoveries") recoveries = std::stoull(v);
  // Most kills land while the child holds the lock (it is writing all the time).
  EXPECT_GT(recoveries, 10u);
}

}  // namespace
}  // namespace regioncache
