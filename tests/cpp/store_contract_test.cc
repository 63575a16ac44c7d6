// The cache contract every store keeps, written once and run on each store
// through the public interface (OpenStore): shared memory, a directory of
// files, and a real memcached the fixture starts on 127.0.0.1 (a missing
// memcached binary fails these tests, it never skips them). What only one
// store does stays in that store's own test file.
#include <unistd.h>

#include <atomic>
#include <cstdlib>
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
  // Compresses values from OPTIONS COMPRESS_MIN_SIZE on.
  bool compresses;
  // Stats count this region's writes (memcached's are the server's commands).
  bool sets_are_writes;
  // How precisely a Peek reports an expiry (memcached keeps whole seconds).
  int64_t expiry_resolution_ms;
};

// The store specs: each makes a fresh place for one test's store.
struct ShmSpec {
  static constexpr Traits kTraits{"shm", true, 20000, true, true, 1};
  std::string Location() const { return region.name(); }
  testing::ScratchShmRegion region{"gtest-contract-" + TestName()};
};

struct FileSpec {
  static constexpr Traits kTraits{"file", true, 1500, true, true, 1};
  std::string Location() const { return dir.path() + "/region"; }
  testing::TempDir dir{"regioncache-contract"};
};

struct MemcachedSpec {
  static constexpr Traits kTraits{"memcached", false, 2500, true, false, 1000};
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

// --- compare-and-swap ------------------------------------------------------

// An expiry a whole number of seconds ahead (memcached keeps seconds).
int64_t SecondsAhead(int64_t s) { return (NowMs() / 1000 + s) * 1000; }

std::string HeldAs(std::string_view data, uint32_t flags) {
  return std::string(data) + "/" + std::to_string(flags);
}

// "value/flags" of what key holds, or the status of the miss.
std::string Held(Store* s, std::string_view key) {
  Value v;
  Status st = s->Get(key, &v);
  return st.ok() ? HeldAs(v.data, v.flags) : st.ToString();
}

TYPED_TEST(StoreContract, CompareAndSwapReplacesOnlyWhatItExpects) {
  auto s = this->Open();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Set("k", "v1", kEncStr, SecondsAhead(600)).ok());
  Stats before, after;
  ASSERT_TRUE(s->GetStats(&before).ok());
  // Other bytes, a prefix, or the same bytes under other flags: nothing changes.
  WriteItem other{"", "never", kEncStr, kNever};
  EXPECT_TRUE(s->CompareAndSwap("k", "v2", kEncStr, &other).IsNotStored());
  EXPECT_TRUE(s->CompareAndSwap("k", "v", kEncStr, &other).IsNotStored());
  EXPECT_TRUE(s->CompareAndSwap("k", "v1", kEncBytes, &other).IsNotStored());
  EXPECT_EQ(Held(s.get(), "k"), HeldAs("v1", kEncStr));
  // Equal: replaced by the new value, with its flags and its own expiry;
  // the WriteItem's key is not used.
  int64_t exp = SecondsAhead(3600);
  WriteItem with{"ignored", "v2", kEncBytes, exp};
  Status st = s->CompareAndSwap("k", "v1", kEncStr, &with);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Held(s.get(), "k"), HeldAs("v2", kEncBytes));
  Value v;
  EXPECT_TRUE(s->Peek("ignored", &v).IsNotFound());
  ASSERT_TRUE(s->Peek("k", &v).ok());
  EXPECT_LT(std::abs(v.expires_ms - exp), TypeParam::kTraits.expiry_resolution_ms);
  // The old value no longer matches; the new one does, and kNever is kept.
  EXPECT_TRUE(s->CompareAndSwap("k", "v1", kEncStr, &with).IsNotStored());
  WriteItem forever{"", "v3", kEncStr, kNever};
  ASSERT_TRUE(s->CompareAndSwap("k", "v2", kEncBytes, &forever).ok());
  ASSERT_TRUE(s->Peek("k", &v).ok());
  EXPECT_EQ(v.data, "v3");
  EXPECT_EQ(v.expires_ms, kNever);
  // Counted as the writes they are: two swaps, no failed comparison.
  if constexpr (TypeParam::kTraits.sets_are_writes) {
    ASSERT_TRUE(s->GetStats(&after).ok());
    EXPECT_EQ(after.sets - before.sets, 2u);
    EXPECT_EQ(after.entries, before.entries);
  }
}

TYPED_TEST(StoreContract, CompareAndSwapOfNoLiveEntryIsNotFound) {
  auto s = this->Open();
  ASSERT_TRUE(s);
  WriteItem with{"", "new", kEncStr, kNever};
  EXPECT_TRUE(s->CompareAndSwap("missing", "", kEncStr, &with).IsNotFound());
  EXPECT_TRUE(s->CompareAndSwap("missing", "", kEncStr, nullptr).IsNotFound());
  ASSERT_TRUE(s->Set("gone", "old", kEncStr, NowMs() + 1500).ok());
  ASSERT_TRUE(s->Touch("gone", NowMs() - 1000).ok());  // expired, as by time
  EXPECT_TRUE(s->CompareAndSwap("gone", "old", kEncStr, &with).IsNotFound());
  EXPECT_TRUE(s->CompareAndSwap("gone", "old", kEncStr, nullptr).IsNotFound());
  // Neither swap made an entry.
  EXPECT_EQ(Held(s.get(), "missing"), Status::NotFound().ToString());
  EXPECT_EQ(Held(s.get(), "gone"), Status::NotFound().ToString());
}

TYPED_TEST(StoreContract, CompareAndSwapWithNothingDeletes) {
  auto s = this->Open();
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Set("k", "token-1", kEncStr, SecondsAhead(60)).ok());
  EXPECT_TRUE(s->CompareAndSwap("k", "token-2", kEncStr, nullptr).IsNotStored());
  EXPECT_TRUE(s->CompareAndSwap("k", "token-1", kEncInt, nullptr).IsNotStored());
  EXPECT_EQ(Held(s.get(), "k"), HeldAs("token-1", kEncStr));
  ASSERT_TRUE(s->CompareAndSwap("k", "token-1", kEncStr, nullptr).ok());
  EXPECT_EQ(Held(s.get(), "k"), Status::NotFound().ToString());
  EXPECT_TRUE(s->CompareAndSwap("k", "token-1", kEncStr, nullptr).IsNotFound());
  // The key is free again for add (a released lock can be taken).
  EXPECT_TRUE(s->Add("k", "token-3", kEncStr, kNever).ok());
}

TYPED_TEST(StoreContract, CompareAndSwapTooLargeLeavesTheEntry) {
  auto s = this->Open({{"MAX_ITEM_SIZE", "64KB"}});
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Set("k", "old", kEncStr, kNever).ok());
  std::mt19937_64 rng(70001);
  std::string big(70000, '\0');  // random: no store compresses it under the limit
  for (auto& c : big) c = static_cast<char>(rng());
  WriteItem with{"", big, kEncBytes, kNever};
  Status st = s->CompareAndSwap("k", "old", kEncStr, &with);
  EXPECT_EQ(st.code(), Status::Code::kTooLarge) << st.ToString();
  EXPECT_NE(st.message().find("region 'contract'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("70000"), std::string::npos) << st.message();
  EXPECT_EQ(Held(s.get(), "k"), HeldAs("old", kEncStr));
}

TYPED_TEST(StoreContract, CompareAndSwapOfCompressibleValues) {
  Opts opts;
  if constexpr (TypeParam::kTraits.compresses) opts["COMPRESS_MIN_SIZE"] = "1KB";
  auto s = this->Open(opts);
  ASSERT_TRUE(s);
  std::string a, b;
  for (int i = 0; i < 4000; ++i) {
    a += "row " + std::to_string(i) + ";";
    b += "line " + std::to_string(i) + ";";
  }
  ASSERT_TRUE(s->Set("k", a, kEncBytes, kNever).ok());
  // The last byte differs, the length is the same: compared whole.
  std::string near = a;
  near.back() = '!';
  WriteItem with{"", b, kEncBytes, kNever};
  EXPECT_TRUE(s->CompareAndSwap("k", near, kEncBytes, &with).IsNotStored());
  ASSERT_TRUE(s->CompareAndSwap("k", a, kEncBytes, &with).ok());
  Value v;
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.bytes(), b);
  EXPECT_EQ(v.flags, kEncBytes);
  if constexpr (TypeParam::kTraits.sets_are_writes && TypeParam::kTraits.compresses) {
    // Stored compressed, as a set would have stored it.
    Stats st;
    ASSERT_TRUE(s->GetStats(&st).ok());
    EXPECT_LT(st.bytes_used, b.size() / 2);
  }
  ASSERT_TRUE(s->CompareAndSwap("k", b, kEncBytes, nullptr).ok());
  EXPECT_TRUE(s->Get("k", &v).IsNotFound());
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
