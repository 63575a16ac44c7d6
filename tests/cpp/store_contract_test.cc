// The cache contract every store keeps, written once and run on each store
// through the public interface (OpenStore): shared memory, a directory of
// files, and a real memcached the fixture starts on 127.0.0.1 (a missing
// memcached binary fails these tests, it never skips them). What only one
// store does stays in that store's own test file.
#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
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
using Opts = std::map<std::string, std::string>;

std::string TestName() {
  return ::testing::UnitTest::GetInstance()->current_test_info()->name();
}

// What of the contract a store keeps in its own way.
struct Traits {
  const char* kind;
  // incr counts in signed 64 bits and knows integers from text by the flags
  // (memcached's server counts unsigned, stops at 0 and is blind to flags).
  bool signed_incr;
  int hammer_ops;  // per thread, in ThreadsHammeringTheSameKeys
};

// The store specs: each makes a fresh place for one test's store.
struct ShmSpec {
  static constexpr Traits kTraits{"shm", true, 20000};
  std::string Location() const { return region.name(); }
  testing::ScratchShmRegion region{"gtest-contract-" + TestName()};
};

struct FileSpec {
  static constexpr Traits kTraits{"file", true, 1500};
  std::string Location() const { return dir.path() + "/region"; }
  testing::TempDir dir{"regioncache-contract"};
};

struct MemcachedSpec {
  static constexpr Traits kTraits{"memcached", false, 2500};
  std::string Location() const { return server.location(); }
  testing::MemcachedServer server;
};

template <class StoreKind>
class StoreContract : public ::testing::Test {
 protected:
  void SetUp() override {
    if constexpr (std::is_same_v<StoreKind, MemcachedSpec>) {
      ASSERT_TRUE(kind_.server.up()) << kind_.server.error();
    }
  }
  std::unique_ptr<Store> Open(Opts opts = {}) {
    std::unique_ptr<Store> s;
    StoreSpec spec{"contract", StoreKind::kTraits.kind, kind_.Location(), std::move(opts)};
    Status st = OpenStore(spec, &s);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }
  StoreKind kind_;
};

class KindName {
 public:
  template <class T>
  static std::string GetName(int) {
    return T::kTraits.kind;
  }
};

using StoreKinds = ::testing::Types<ShmSpec, FileSpec, MemcachedSpec>;
TYPED_TEST_SUITE(StoreContract, StoreKinds, KindName);

TYPED_TEST(StoreContract, SetGetDeleteRoundTrip) {
  auto s = this->Open();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kind(), TypeParam::kTraits.kind);
  Value v;
  EXPECT_TRUE(s->Get("k", &v).IsNotFound());
  ASSERT_TRUE(s->Set("k", "hello", kEncStr, kNever).ok());
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.data, "hello");
  EXPECT_EQ(v.flags, kEncStr);
  ASSERT_TRUE(s->Set("k", std::string(5000, 'x'), kEncBytes, kNever).ok());
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.data, std::string(5000, 'x'));
  EXPECT_EQ(v.flags, kEncBytes);
  EXPECT_TRUE(s->Delete("k").ok());
  EXPECT_TRUE(s->Delete("k").IsNotFound());
  EXPECT_TRUE(s->Get("k", &v).IsNotFound());
  // Empty value and binary key are fine.
  std::string bkey("a\0b", 3);
  ASSERT_TRUE(s->Set(bkey, "", kEncBytes, kNever).ok());
  ASSERT_TRUE(s->Get(bkey, &v).ok());
  EXPECT_EQ(v.data, "");
}

TYPED_TEST(StoreContract, AddReplaceTouch) {
  auto s = this->Open();
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->Replace("k", "x", 0, kNever).IsNotStored());
  EXPECT_TRUE(s->Add("k", "1", 0, kNever).ok());
  EXPECT_TRUE(s->Add("k", "2", 0, kNever).IsNotStored());
  EXPECT_TRUE(s->Replace("k", "3", 0, kNever).ok());
  Value v;
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.data, "3");
  EXPECT_TRUE(s->Touch("missing", kNever).IsNotFound());
  EXPECT_TRUE(s->Touch("k", NowMs() - 1).ok());
  EXPECT_TRUE(s->Get("k", &v).IsNotFound());  // touched into the past: gone
  // An expired entry does not block add.
  ASSERT_TRUE(s->Set("e", "old", 0, NowMs() - 10).ok());
  EXPECT_TRUE(s->Add("e", "new", 0, kNever).ok());
  ASSERT_TRUE(s->Get("e", &v).ok());
  EXPECT_EQ(v.data, "new");
}

TYPED_TEST(StoreContract, IncrOnStoredIntegers) {
  auto s = this->Open();
  ASSERT_TRUE(s);
  int64_t r = 0;
  EXPECT_TRUE(s->Incr("n", 1, &r).IsNotFound());
  ASSERT_TRUE(s->Set("n", "41", kEncInt, kNever).ok());
  ASSERT_TRUE(s->Incr("n", 1, &r).ok());
  EXPECT_EQ(r, 42);
  Value v;
  ASSERT_TRUE(s->Get("n", &v).ok());
  EXPECT_EQ(v.data, "42");
  EXPECT_EQ(v.flags, kEncInt);
  ASSERT_TRUE(s->Set("big", "9223372036854775807", kEncInt, kNever).ok());
  EXPECT_EQ(s->Incr("big", 1, &r).code(), Status::Code::kOutOfRange);
  ASSERT_TRUE(s->Get("big", &v).ok());
  EXPECT_EQ(v.data, "9223372036854775807");  // untouched by the failed incr
  if constexpr (TypeParam::kTraits.signed_incr) {
    ASSERT_TRUE(s->Incr("n", -50, &r).ok());
    EXPECT_EQ(r, -8);
    ASSERT_TRUE(s->Get("n", &v).ok());
    EXPECT_EQ(v.data, "-8");
    EXPECT_EQ(v.flags, kEncInt);
    ASSERT_TRUE(s->Set("s", "41", kEncStr, kNever).ok());
    EXPECT_EQ(s->Incr("s", 1, &r).code(), Status::Code::kNotANumber);
    ASSERT_TRUE(s->Set("huge", "123456789012345678901234567890", kEncInt, kNever).ok());
    EXPECT_EQ(s->Incr("huge", 1, &r).code(), Status::Code::kOutOfRange);
  }
}

TYPED_TEST(StoreContract, TooLargeNamesRegionSizeAndLimitAndStoresNothing) {
  auto s = this->Open({{"MAX_ITEM_SIZE", "64KB"}});
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Set("keep", "me", 0, kNever).ok());
  // Random bytes: no store can compress them under the limit.
  std::mt19937_64 rng(70000);
  std::string big(70000, '\0');
  for (auto& c : big) c = static_cast<char>(rng());
  Status st = s->Set("big", big, kEncBytes, kNever);
  EXPECT_EQ(st.code(), Status::Code::kTooLarge);
  EXPECT_NE(st.message().find("region 'contract'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("70000"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("65536"), std::string::npos) << st.message();
  Value v;
  EXPECT_TRUE(s->Get("big", &v).IsNotFound());
  ASSERT_TRUE(s->Get("keep", &v).ok());
  EXPECT_EQ(v.data, "me");
}

TYPED_TEST(StoreContract, ManyAtOnceAndPurgeMatchingAndClear) {
  auto s = this->Open();
  ASSERT_TRUE(s);
  std::vector<std::string> keys;
  ASSERT_EQ(testing::SetKeysToTheirNames(s.get(), "k", 300, &keys), "");
  std::vector<std::string_view> views(keys.begin(), keys.end());
  views.push_back("missing");
  std::vector<Value> vals;
  std::vector<bool> found;
  ASSERT_TRUE(s->GetMany(views, &vals, &found).ok());
  ASSERT_EQ(found.size(), views.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(found[i]) << keys[i];
    EXPECT_EQ(vals[i].data, keys[i]);
    EXPECT_EQ(vals[i].flags, kEncStr);
  }
  EXPECT_FALSE(found.back());
  ListOptions lo;
  lo.glob = "k1*";
  lo.limit = 1000;
  ListPage page;
  ASSERT_TRUE(s->List(lo, &page).ok());
  EXPECT_EQ(page.entries.size(), 111u);  // k1, k10-19, k100-199
  uint64_t removed = 0;
  ASSERT_TRUE(s->PurgeMatching("k2*", &removed).ok());
  EXPECT_EQ(removed, 111u);
  Value v;
  EXPECT_TRUE(s->Get("k250", &v).IsNotFound());
  ASSERT_TRUE(s->Get("k150", &v).ok());
  Stats stats;
  ASSERT_TRUE(s->GetStats(&stats).ok());
  EXPECT_EQ(stats.entries, 300u - 111u);
  ASSERT_TRUE(s->Clear().ok());
  EXPECT_TRUE(s->Get("k150", &v).IsNotFound());
  ASSERT_TRUE(s->GetStats(&stats).ok());
  EXPECT_EQ(stats.entries, 0u);
}

// Threads sharing one store object: every value read is one that was
// written whole, and increments from every thread all count.
TYPED_TEST(StoreContract, ThreadsHammeringTheSameKeys) {
  auto s = this->Open();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Set("n", "0", kEncInt, kNever).ok());
  std::vector<std::thread> threads;
  std::atomic<int> bad{0}, incr_failed{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Value v;
      std::mt19937 rng(t);
      int64_t r;
      for (int i = 0; i < 250; ++i)
        if (!s->Incr("n", 1, &r).ok()) incr_failed++;
      for (int i = 0; i < TypeParam::kTraits.hammer_ops; ++i) {
        std::string k = "k" + std::to_string(rng() % 64);
        if (rng() % 2) {
          s->Set(k, ValueFor(k, rng() % 2000), 0, kNever);
        } else if (s->Get(k, &v).ok() && v.data != ValueFor(k, v.data.size())) {
          bad++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(incr_failed.load(), 0);
  Value v;
  ASSERT_TRUE(s->Get("n", &v).ok());
  EXPECT_EQ(v.data, "1000");
}

}  // namespace
}  // namespace regioncache
