// CompareAndSwap between processes, on a shared-memory region and on a
// directory of files: forked children count up one key by read, swap
// old -> old+1, again when another got there first. No increment may be
// lost (every swap is atomic against every other process's), and a child
// killed with SIGKILL in the middle leaves the region readable, its lock
// free, and the count equal to the swaps the children reported.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "regioncache/codec.h"
#include "regioncache/store.h"
#include "support/test_support.h"

namespace regioncache {
namespace {

constexpr int kChildren = 8;
constexpr int kRounds = 500;
constexpr char kKey[] = "counter";

// What the children tell the parent, in memory they share with it. A child
// sets pending before each swap and, once the swap is done, counts it and
// clears pending: killed in between, the swap may or may not have landed.
struct Reports {
  std::atomic<int64_t> done[64];
  std::atomic<int> pending[64];
};

class SharedReports {
 public:
  SharedReports() {
    void* p = mmap(nullptr, sizeof(Reports), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    r_ = p == MAP_FAILED ? nullptr : new (p) Reports();
  }
  ~SharedReports() {
    if (r_) munmap(r_, sizeof(Reports));
  }
  Reports* get() const { return r_; }

 private:
  Reports* r_;
};

class CasProcesses : public ::testing::TestWithParam<const char*> {
 protected:
  StoreSpec Spec() const {
    std::string kind = GetParam();
    return {"cas", kind, kind == "shm" ? shm_.name() : dir_.path() + "/region", {}};
  }
  // Each process opens its own store on the region.
  std::unique_ptr<Store> Open() const {
    std::unique_ptr<Store> s;
    Status st = OpenStore(Spec(), &s);
    if (!st.ok()) ADD_FAILURE() << st.ToString();
    return s;
  }

  testing::ScratchShmRegion shm_{"gtest-cas-processes"};
  testing::TempDir dir_{"regioncache-cas"};
};

// One increment: read, swap old -> old+1, again on NotStored. *pending (if
// given) is set before each swap and cleared after; *done counts the swap.
// Returns the status of the step that failed (a miss, an error).
Status SwapIncrement(Store* s, std::atomic<int>* pending, std::atomic<int64_t>* done) {
  for (;;) {
    Value v;
    if (Status g = s->Get(kKey, &v); !g.ok()) return g;
    std::string next = std::to_string(std::stoll(std::string(v.bytes())) + 1);
    WriteItem with{"", next, kEncInt, kNever};
    if (pending) pending->store(1);
    Status c = s->CompareAndSwap(kKey, v.bytes(), v.flags, &with);
    if (c.ok()) {
      if (done) done->fetch_add(1);
      if (pending) pending->store(0);
      return c;
    }
    if (pending) pending->store(0);
    if (!c.IsNotStored()) return c;
  }
}

// A child's whole run: kRounds increments, 0 if every one succeeded.
int Steady(const std::function<std::unique_ptr<Store>()>& open, std::atomic<int64_t>* done) {
  alarm(120);  // a hang ends the child (and fails the test) instead of the run
  auto s = open();
  if (!s) return 2;
  for (int i = 0; i < kRounds; ++i)
    if (!SwapIncrement(s.get(), nullptr, done).ok()) return 3;
  return 0;
}

int64_t Counter(Store* s) {
  Value v;
  Status st = s->Get(kKey, &v);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return st.ok() ? std::stoll(std::string(v.bytes())) : -1;
}

TEST_P(CasProcesses, EightProcessesLoseNoIncrement) {
  auto s = Open();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Set(kKey, "0", kEncInt, kNever).ok());
  SharedReports reports;
  ASSERT_TRUE(reports.get());
  std::string failed = testing::RunInChildrenAtOnce(kChildren, [&](int c) {
    return Steady([&] { return Open(); }, &reports.get()->done[c]);
  });
  EXPECT_EQ(failed, "");
  int64_t swaps = 0;
  for (int c = 0; c < kChildren; ++c) swaps += reports.get()->done[c].load();
  EXPECT_EQ(swaps, kChildren * kRounds);
  EXPECT_EQ(Counter(s.get()), kChildren * kRounds);
}

TEST_P(CasProcesses, KilledSwappersLeaveTheCountOfTheirReports) {
  auto s = Open();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Set(kKey, "0", kEncInt, kNever).ok());
  SharedReports reports;
  ASSERT_TRUE(reports.get());
  Reports* r = reports.get();
  // Seven children count to the end; meanwhile an eighth is started and
  // killed with SIGKILL, round after round, at random points of its swaps.
  constexpr int kSteady = kChildren - 1;
  std::vector<pid_t> steady;
  for (int c = 0; c < kSteady; ++c) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(Steady([&] { return Open(); }, &r->done[c]));
    steady.push_back(pid);
  }
  constexpr int kKills = 16;
  testing::KillNineRounds rounds(15, std::chrono::microseconds(500),
                                 std::chrono::microseconds(8000));
  for (int k = 0; k < kKills; ++k) {
    int slot = kSteady + k;
    std::string why = rounds.Round([&](const testing::KillNineRounds::Ready& ready) {
      alarm(120);
      auto mine = Open();
      if (!mine) _exit(2);
      ready();
      for (;;)
        if (!SwapIncrement(mine.get(), &r->pending[slot], &r->done[slot]).ok()) _exit(3);
    });
    EXPECT_EQ(why, "") << "round " << k;
    // Readable at once, whatever the killed child held.
    EXPECT_GE(Counter(s.get()), 0) << "after round " << k;
  }
  for (pid_t pid : steady) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "steady child status " << status;
  }
  int64_t reported = 0, in_flight = 0, killed_swaps = 0;
  for (int c = 0; c < kSteady + kKills; ++c) reported += r->done[c].load();
  for (int c = kSteady; c < kSteady + kKills; ++c) {
    in_flight += r->pending[c].load();
    killed_swaps += r->done[c].load();
  }
  for (int c = 0; c < kSteady; ++c) EXPECT_EQ(r->done[c].load(), kRounds);
  // Every reported swap is in the count, and nothing else is but the swaps
  // of children killed after their swap and before its report.
  int64_t count = Counter(s.get());
  EXPECT_GE(count, reported);
  EXPECT_LE(count, reported + in_flight);
  EXPECT_GT(killed_swaps, 0);  // the killed children did swap before their end
  std::printf("[ %s ] counter %lld: %lld reported swaps (%lld by the killed), %lld in flight\n",
              GetParam(), static_cast<long long>(count), static_cast<long long>(reported),
              static_cast<long long>(killed_swaps), static_cast<long long>(in_flight));
  // The region goes on: a swap by the parent takes (no lock left held).
  WriteItem with{"", "done", kEncStr, kNever};
  Value v;
  ASSERT_TRUE(s->Get(kKey, &v).ok());
  EXPECT_TRUE(s->CompareAndSwap(kKey, v.bytes(), v.flags, &with).ok());
}

INSTANTIATE_TEST_SUITE_P(Stores, CasProcesses, ::testing::Values("shm", "file"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace regioncache
