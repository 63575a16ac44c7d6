// Tests of the file store against real files in a temporary directory, with
// real forked processes for sharing, locking and kill -9 mid-write.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "file/file_format.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/file_store.h"
#include "regioncache/log.h"
#include "regioncache/store.h"
#include "core/compress.h"
#include "support/test_support.h"

namespace regioncache {
namespace {

namespace fs = std::filesystem;
using Opts = std::map<std::string, std::string>;
using testing::ValueFor;

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    dir_ = root_ + "/region";
  }

  std::unique_ptr<Store> Open(Opts opts = {}) {
    std::unique_ptr<Store> s;
    Status st = OpenFileStore(StoreSpec{"files", "file", dir_, opts}, &s);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }

  std::string PathOf(std::string_view key) const {
    std::string name = file::EntryName(key);
    return dir_ + "/" + name.substr(0, 2) + "/" + name;
  }

  static bool Exists(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
  }

  static std::string ReadAll(const std::string& path) { return testing::ReadFile(path); }
  static void WriteAll(const std::string& path, const std::string& data) {
    ASSERT_TRUE(testing::WriteFile(path, data)) << path;
  }

  static std::string Extra(const Stats& st, const std::string& name) {
    for (auto& [k, v] : st.extra)
      if (k == name) return v;
    return "";
  }

  // Every file under the store directory whose name says it is an entry,
  // and the sum of their sizes: the truth the ledger approximates.
  void Census(uint64_t* files, uint64_t* bytes, uint64_t* temps = nullptr) const {
    *files = *bytes = 0;
    if (temps) *temps = 0;
    for (auto& e : fs::recursive_directory_iterator(dir_)) {
      std::string n = e.path().filename().string();
      if (file::IsEntryName(n)) {
        ++*files;
        *bytes += e.file_size();
      } else if (temps && file::IsTempName(n)) {
        ++*temps;
      }
    }
  }

  // What the stores log (native code never writes to stderr).
  void StartLog() { log_.emplace(); }
  std::string TakeLog() {
    std::string text = log_ ? log_->Take() : std::string();
    log_.reset();
    return text;
  }

  void ExpectExactCountFromChildren(Store* s, int children, int times, bool own_store);

  std::optional<testing::LogCapture> log_;
  testing::TempDir tmp_{"regioncache-file-test"};
  std::string root_ = tmp_.path();
  std::string dir_;
};

// The round trip every store makes is in store_contract_test.cc; here what
// the file store adds: expiry times read back, values larger than the first
// read, removed files, long keys, and a ledger that matches the directory.
TEST_F(FileTest, RoundTripOfLargeValuesAndLongKeysKeepsFilesAndLedgerRight) {
  auto s = Open();
  EXPECT_TRUE(s->MayBlock());
  Value v;
  ASSERT_TRUE(s->Set("k", "hello", kEncStr, kNever).ok());
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.expires_ms, kNever);
  // Larger than the first read, so the value is read in two parts.
  std::string big = ValueFor("big", 3 << 20);
  ASSERT_TRUE(s->Set("k", big, kEncPickle, NowMs() + 60000).ok());
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.data, big);
  EXPECT_EQ(v.flags, kEncPickle);
  EXPECT_GT(v.expires_ms, NowMs());
  EXPECT_TRUE(s->Delete("k").ok());
  EXPECT_FALSE(Exists(PathOf("k")));
  // Empty value, binary key, long key.
  std::string bkey("a\0b\xff", 4);
  ASSERT_TRUE(s->Set(bkey, "", kEncBytes, kNever).ok());
  ASSERT_TRUE(s->Get(bkey, &v).ok());
  EXPECT_EQ(v.data, "");
  std::string lkey(5000, 'L');
  ASSERT_TRUE(s->Set(lkey, "long", kEncStr, kNever).ok());
  ASSERT_TRUE(s->Get(lkey, &v).ok());
  EXPECT_EQ(v.data, "long");
  // A second store object on the same directory (as another process would)
  // sees the same entries.
  auto t = Open();
  ASSERT_TRUE(t->Get(lkey, &v).ok());
  Stats st;
  ASSERT_TRUE(t->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 2u);
  EXPECT_EQ(st.capacity, 1ull << 30);
  uint64_t files, bytes;
  Census(&files, &bytes);
  EXPECT_EQ(st.entries, files);
  EXPECT_EQ(st.bytes_used, bytes);
}

TEST_F(FileTest, OpensThroughTheRegistry) {
  std::unique_ptr<Store> s;
  ASSERT_TRUE(OpenStore(StoreSpec{"files", "file", dir_, {}}, &s).ok());
  EXPECT_EQ(s->kind(), "file");
  bool listed = false;
  for (auto& k : StoreKinds()) listed |= k == "file";
  EXPECT_TRUE(listed);
}

TEST_F(FileTest, DirectoryAndFilesArePrivateAndSelfDescribing) {
  dir_ = root_ + "/a/b/c";  // parents created too
  auto s = Open();
  struct stat st;
  for (std::string d : {root_ + "/a", root_ + "/a/b", dir_}) {
    ASSERT_EQ(stat(d.c_str(), &st), 0) << d;
    EXPECT_EQ(st.st_mode & 0777, 0700u) << d;
  }
  ASSERT_TRUE(s->Set(":1:user:42", "payload", kEncStr, 1234567890123).ok());
  std::string path = PathOf(":1:user:42");
  ASSERT_EQ(stat(path.c_str(), &st), 0) << path;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(fs::path(path).parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The file names its key by XXH3-128 hex, sharded by its first byte.
  std::string name = fs::path(path).filename();
  EXPECT_EQ(name.size(), 32u);
  EXPECT_EQ(fs::path(path).parent_path().filename().string(), name.substr(0, 2));
  // Header: magic, version, flags, lengths, times; then key, then value.
  std::string raw = ReadAll(path);
  ASSERT_EQ(raw.size(), 64u + 10 + 7);
  EXPECT_EQ(raw.substr(0, 4), "RGCF");
  file::EntryHeader h;
  std::memcpy(&h, raw.data(), 64);
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.header_size, 64);
  EXPECT_EQ(h.flags, uint32_t(kEncStr));
  EXPECT_EQ(h.key_len, 10u);
  EXPECT_EQ(h.value_len, 7u);
  EXPECT_EQ(h.raw_len, 7u);
  EXPECT_EQ(h.expires_ms, 1234567890123);
  EXPECT_NEAR(double(h.stored_ms), double(NowMs()), 60000.0);
  EXPECT_EQ(raw.substr(64, 10), ":1:user:42");
  EXPECT_EQ(raw.substr(74), "payload");
}

// Add, replace and touch as every store does them: store_contract_test.cc.
TEST_F(FileTest, TouchRewritesInPlaceAndRefusedWritesLeaveNoFiles) {
  auto s = Open();
  ASSERT_TRUE(s->Set("k", "3", 0, kNever).ok());
  Value v;
  int64_t later = NowMs() + 3600000;
  ASSERT_TRUE(s->Touch("k", later).ok());
  ASSERT_TRUE(s->Get("k", &v).ok());  // checksums still valid after the in-place rewrite
  EXPECT_EQ(v.expires_ms, later);
  EXPECT_EQ(v.data, "3");
  EXPECT_TRUE(s->Touch("k", NowMs() - 1).ok());
  EXPECT_TRUE(s->Get("k", &v).IsNotFound());  // touched into the past: gone
  EXPECT_FALSE(Exists(PathOf("k")));
  // An expired entry does not block add, and replace does not revive it.
  ASSERT_TRUE(s->Set("e", "old", 0, NowMs() - 10).ok());
  EXPECT_TRUE(s->Replace("e", "x", 0, kNever).IsNotStored());
  ASSERT_TRUE(s->Set("e", "old", 0, NowMs() - 10).ok());
  EXPECT_TRUE(s->Add("e", "new", 0, kNever).ok());
  // No temporary file is left behind by a refused add; the store's own
  // spare files (overwritten entries kept for its next writes) are
  // temporary files of a live writer and go when the store closes.
  s.reset();
  uint64_t files, bytes, temps;
  Census(&files, &bytes, &temps);
  EXPECT_EQ(temps, 0u);
}

TEST_F(FileTest, ExpiryIsCheckedOnReadAndTheFileRemoved) {
  auto s = Open();
  ASSERT_TRUE(s->Set("k", "v", 0, NowMs() + 150).ok());
  Value v;
  EXPECT_TRUE(s->Get("k", &v).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(Exists(PathOf("k")));
  EXPECT_TRUE(s->Get("k", &v).IsNotFound());
  EXPECT_FALSE(Exists(PathOf("k")));
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 0u);
  EXPECT_EQ(st.bytes_used, 0u);
  EXPECT_EQ(st.expirations, 1u);
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.misses, 1u);
  EXPECT_EQ(st.sets, 1u);
}

// Incr as every store does it: store_contract_test.cc.
TEST_F(FileTest, IncrKeepsTheExpiryAndRefusesDigitsWithLetters) {
  auto s = Open();
  int64_t r = 0;
  int64_t exp = NowMs() + 3600000;
  ASSERT_TRUE(s->Set("n", "41", kEncInt, exp).ok());
  ASSERT_TRUE(s->Incr("n", -49, &r).ok());
  EXPECT_EQ(r, -8);
  Value v;
  ASSERT_TRUE(s->Get("n", &v).ok());
  EXPECT_EQ(v.expires_ms, exp);  // incr keeps the expiry
  ASSERT_TRUE(s->Set("x", "4x1", kEncInt, kNever).ok());
  EXPECT_EQ(s->Incr("x", 1, &r).code(), Status::Code::kNotANumber);
  ASSERT_TRUE(s->Set("gone", "1", kEncInt, NowMs() - 1).ok());
  EXPECT_TRUE(s->Incr("gone", 1, &r).IsNotFound());
}

// The too-large refusal every store makes: store_contract_test.cc. Here
// the file store's limit: key and value together, and its defaults.
TEST_F(FileTest, ItemLimitCountsKeyAndValueAndFollowsMaxSize) {
  auto s = Open({{"MAX_ITEM_SIZE", "64KB"}});
  EXPECT_EQ(s->MaxItemSize(), 65536u);
  // A value that compresses well is refused by its size, not its stored size.
  Status st = s->Set("k", std::string(70000, 'x'), 0, kNever);
  EXPECT_EQ(st.code(), Status::Code::kTooLarge);
  EXPECT_NE(st.message().find("region 'files'"), std::string::npos) << st.message();
  // Exactly at the limit is fine (key + value).
  EXPECT_TRUE(s->Set("k", std::string(65536 - 1, 'y'), 0, kNever).ok());
  // The default is 64MB, capped by a smaller MAX_SIZE.
  auto d = Open();
  EXPECT_EQ(d->MaxItemSize(), 64u << 20);
  dir_ += "2";
  auto small = Open({{"MAX_SIZE", "1MB"}});
  EXPECT_EQ(small->MaxItemSize(), (1u << 20) - 64);
}

TEST_F(FileTest, OptionsAreValidatedWithRegionAndOption) {
  struct Case {
    Opts opts;
    const char* needle;
  } cases[] = {
      {{{"MAX_SIZE", "12XB"}}, "MAX_SIZE"},
      {{{"MAX_SIZE", "100"}}, "MAX_SIZE"},
      {{{"MAX_ITEM_SIZE", "0"}}, "MAX_ITEM_SIZE"},
      {{{"MAX_SIZE", "1MB"}, {"MAX_ITEM_SIZE", "2MB"}}, "MAX_ITEM_SIZE"},
      {{{"MAX_ENTRIES", "-3"}}, "MAX_ENTRIES"},
      {{{"CULL_FREQUENCY", "x"}}, "CULL_FREQUENCY"},
      {{{"COMPRESS_LEVEL", "0"}}, "COMPRESS_LEVEL"},
      {{{"COMPRESS_MIN_SIZE", "lots"}}, "COMPRESS_MIN_SIZE"},
      {{{"FSYNC", "maybe"}}, "FSYNC"},
      {{{"SIZE", "1MB"}}, "SIZE"},
  };
  for (auto& c : cases) {
    std::unique_ptr<Store> s;
    Status st = OpenFileStore(StoreSpec{"files", "file", dir_, c.opts}, &s);
    EXPECT_EQ(st.code(), Status::Code::kInvalidArgument) << c.needle;
    EXPECT_NE(st.message().find("region 'files'"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(c.needle), std::string::npos) << st.message();
  }
  std::unique_ptr<Store> s;
  Status st = OpenFileStore(StoreSpec{"files", "file", "", {}}, &s);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("LOCATION"), std::string::npos) << st.message();
}

// The tests run as root, to whom every permission bit says yes. Two honest
// ways to get a directory that cannot be used: a LOCATION under a regular
// file (ENOTDIR, whoever we are), and a forked child that drops to the
// unprivileged user "nobody" before opening a root-owned 0755 directory.
TEST_F(FileTest, UnwritableDirectoryIsAClearErrorAtOpen) {
  std::string plain = root_ + "/plain-file";
  WriteAll(plain, "not a directory");
  std::unique_ptr<Store> s;
  Status st = OpenFileStore(StoreSpec{"files", "file", plain + "/cache", {}}, &s);
  EXPECT_EQ(st.code(), Status::Code::kIOError);
  EXPECT_NE(st.message().find("region 'files'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(plain), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("Not a directory"), std::string::npos) << st.message();
  st = OpenFileStore(StoreSpec{"files", "file", plain, {}}, &s);
  EXPECT_EQ(st.code(), Status::Code::kIOError) << st.ToString();

  // As another uid (65534): a directory of root's is refused (issue 11: the
  // store never uses another user's directory), and its own directory that
  // it may not write into is a clear error at open.
  std::string locked = root_ + "/locked";
  std::string mine = root_ + "/mine";
  ASSERT_EQ(mkdir(locked.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mine.c_str(), 0500), 0);
  if (getuid() == 0) {
    ASSERT_EQ(chown(mine.c_str(), 65534, 65534), 0);
  }
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0);  // let nobody reach it
  int status = 0;
  std::string got = testing::ChildOutput([&] {
    if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
    std::string msg;
    for (const std::string& where : {locked, mine}) {
      std::unique_ptr<Store> c;
      Status cs = OpenFileStore(StoreSpec{"files", "file", where, {}}, &c);
      msg += std::string(CodeName(cs.code())) + "|" + cs.message() + "\n";
    }
    return msg;
  }, &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::string other = got.substr(0, got.find('\n'));
  std::string own = got.substr(got.find('\n') + 1);
  EXPECT_EQ(other.substr(0, other.find('|')), "IOError") << other;
  EXPECT_NE(other.find("region 'files'"), std::string::npos) << other;
  EXPECT_NE(other.find(locked), std::string::npos) << other;
  EXPECT_NE(other.find("belongs to another user"), std::string::npos) << other;
  EXPECT_NE(other.find("mode 0755"), std::string::npos) << other;
  if (getuid() == 0) {
    EXPECT_NE(other.find("owner root (uid 0)"), std::string::npos) << other;
    EXPECT_EQ(own.substr(0, own.find('|')), "IOError") << own;
    EXPECT_NE(own.find(mine), std::string::npos) << own;
    EXPECT_NE(own.find("not writable"), std::string::npos) << own;
    EXPECT_NE(own.find("Permission denied"), std::string::npos) << own;
  }
}

// ----------------------------------------------------------- damaged files --

TEST_F(FileTest, CorruptTruncatedAndForeignFilesAreMissesAndRemoved) {
  auto s = Open();
  std::string val = ValueFor("v", 40000);
  auto Stage = [&](const std::string& key) {
    ASSERT_TRUE(s->Set(key, val, kEncBytes, kNever).ok());
    ASSERT_TRUE(Exists(PathOf(key)));
  };
  // A flipped bit in the value: checksum mismatch.
  Stage("flip");
  {
    std::string raw = ReadAll(PathOf("flip"));
    raw[raw.size() - 100] ^= 1;
    WriteAll(PathOf("flip"), raw);
  }
  // Cut short.
  Stage("cut");
  truncate(PathOf("cut").c_str(), 1000);
  // Shorter than a header.
  Stage("tiny");
  truncate(PathOf("tiny").c_str(), 10);
  // Foreign bytes under an entry name.
  Stage("foreign");
  WriteAll(PathOf("foreign"), std::string(5000, 'Z'));
  // Another key's file under this key's name (what a hash collision looks like).
  Stage("other");
  Stage("victim");
  WriteAll(PathOf("victim"), ReadAll(PathOf("other")));
  // A damaged expiry field.
  Stage("expiry");
  {
    std::string raw = ReadAll(PathOf("expiry"));
    raw[48] ^= 0x40;
    WriteAll(PathOf("expiry"), raw);
  }
  // A damaged length field.
  Stage("len");
  {
    std::string raw = ReadAll(PathOf("len"));
    raw[16] ^= 0x01;
    WriteAll(PathOf("len"), raw);
  }
  StartLog();
  Value v;
  for (const char* k : {"flip", "cut", "tiny", "foreign", "victim", "expiry", "len"}) {
    Status st = s->Get(k, &v);
    EXPECT_TRUE(st.IsNotFound()) << k << ": " << st.ToString();
    EXPECT_FALSE(Exists(PathOf(k))) << k << " was not removed";
    EXPECT_TRUE(s->Get(k, &v).IsNotFound()) << k;  // and a second read is a plain miss
  }
  std::string log = TakeLog();
  for (const char* k : {"flip", "cut", "tiny", "foreign", "victim", "expiry", "len"}) {
    std::string path = PathOf(k);
    size_t at = log.find(path);
    EXPECT_NE(at, std::string::npos) << k << " not logged:\n" << log;
    EXPECT_EQ(log.find(path, at + 1), std::string::npos) << k << " logged twice:\n" << log;
  }
  EXPECT_NE(log.find("region 'files'"), std::string::npos) << log;
  EXPECT_NE(log.find("checksum mismatch"), std::string::npos) << log;
  EXPECT_NE(log.find("another key"), std::string::npos) << log;
  ASSERT_TRUE(s->Get("other", &v).ok());  // the collision's rightful owner is intact
  EXPECT_EQ(v.data, val);
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(Extra(st, "corrupt_removed"), "7");
  EXPECT_EQ(st.entries, 1u);
  uint64_t files, bytes;
  Census(&files, &bytes);
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(st.bytes_used, bytes);
}

TEST_F(FileTest, DamagedFilesAreMissesForEveryOperation) {
  auto s = Open();
  auto Damage = [&](const std::string& key) {
    ASSERT_TRUE(s->Set(key, "12", kEncInt, kNever).ok());
    std::string raw = ReadAll(PathOf(key));
    raw.back() ^= 0x10;
    WriteAll(PathOf(key), raw);
  };
  StartLog();
  int64_t r;
  Damage("a");
  EXPECT_TRUE(s->Incr("a", 1, &r).IsNotFound());
  Damage("b");
  EXPECT_TRUE(s->Add("b", "new", 0, kNever).ok());  // a damaged entry is no entry
  Damage("c");
  EXPECT_TRUE(s->Replace("c", "new", 0, kNever).IsNotStored());
  // Compare-and-swap reads the value whole: the damaged body is no entry.
  WriteItem with{"", "13", kEncInt, kNever};
  Damage("g");
  EXPECT_TRUE(s->CompareAndSwap("g", "12", kEncInt, &with).IsNotFound());
  Damage("h");
  EXPECT_TRUE(s->CompareAndSwap("h", "12", kEncInt, nullptr).IsNotFound());
  // Touch and delete check what they can without the value (header, key).
  ASSERT_TRUE(s->Set("d", "x", 0, kNever).ok());
  WriteAll(PathOf("d"), "garbage that is not an entry at all, long enough for a header ......");
  EXPECT_TRUE(s->Touch("d", kNever).IsNotFound());
  ASSERT_TRUE(s->Set("e", "x", 0, kNever).ok());
  WriteAll(PathOf("e"), "garbage that is not an entry at all, long enough for a header ......");
  EXPECT_TRUE(s->Delete("e").IsNotFound());
  // Listing skips and removes them too.
  ASSERT_TRUE(s->Set("f", "x", 0, kNever).ok());
  WriteAll(PathOf("f"), std::string(100, '\0'));
  ListOptions lo;
  ListPage page;
  ASSERT_TRUE(s->List(lo, &page).ok());
  TakeLog();
  std::set<std::string> keys;
  for (auto& e : page.entries) keys.insert(e.key);
  EXPECT_EQ(keys, (std::set<std::string>{"b"}));
  for (const char* k : {"a", "c", "d", "e", "f", "g", "h"}) EXPECT_FALSE(Exists(PathOf(k))) << k;
  Value v;
  ASSERT_TRUE(s->Get("b", &v).ok());
  EXPECT_EQ(v.data, "new");
}

// --------------------------------------------------------------- bounds --

TEST_F(FileTest, SizeBoundHoldsAndNewestSurvive) {
  auto s = Open({{"MAX_SIZE", "1MB"}});
  const size_t kVal = 3000;
  for (int i = 0; i < 2000; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(s->Set(k, ValueFor(k, kVal), kEncBytes, kNever).ok()) << i;
    if (i % 100 == 99) {
      Stats st;
      ASSERT_TRUE(s->GetStats(&st).ok());
      ASSERT_LE(st.bytes_used, st.capacity) << i;
      uint64_t files, bytes;
      Census(&files, &bytes);
      ASSERT_LE(bytes, 1u << 20) << "on disk, after " << i;
      ASSERT_EQ(st.bytes_used, bytes) << i;
      ASSERT_EQ(st.entries, files) << i;
    }
  }
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_GT(st.evictions, 1000u);
  EXPECT_GT(st.entries, 250u);  // the bound is used, not emptied (1MB / ~3KB = ~340)
  // Eviction takes the oldest first: the newest few are all there.
  Value v;
  for (int i = 1990; i < 2000; ++i) {
    std::string k = "k" + std::to_string(i);
    ASSERT_TRUE(s->Get(k, &v).ok()) << k;
    EXPECT_EQ(v.data, ValueFor(k, kVal));
  }
  // Expired entries go before live ones: every eviction scan of a shard
  // takes all its expired entries first. Ten entries a shard on average.
  dir_ += "-expiry";
  const uint64_t kFile = 64 + 8 + 300;
  auto e = Open({{"MAX_SIZE", std::to_string(2600 * kFile)}});
  char key[16];
  for (int i = 0; i < 1000; ++i) {
    snprintf(key, sizeof key, "dead%04d", i);
    ASSERT_TRUE(e->Set(key, std::string(300, 'd'), 0, NowMs() + 500).ok());
  }
  for (int i = 0; i < 1500; ++i) {
    snprintf(key, sizeof key, "live%04d", i);
    ASSERT_TRUE(e->Set(key, std::string(300, 'l'), 0, kNever).ok());
  }
  ASSERT_TRUE(e->GetStats(&st).ok());
  EXPECT_EQ(st.evictions, 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  for (int i = 0; i < 600; ++i) {
    snprintf(key, sizeof key, "more%04d", i);
    ASSERT_TRUE(e->Set(key, std::string(300, 'm'), 0, kNever).ok());
  }
  int live = 0;
  for (int i = 0; i < 1500; ++i) {
    snprintf(key, sizeof key, "live%04d", i);
    live += e->Get(key, &v).ok();
  }
  ASSERT_TRUE(e->GetStats(&st).ok());
  std::printf("[ info ] %d of 1500 live entries kept; %llu expired and %llu live removed\n", live,
              (unsigned long long)st.expirations, (unsigned long long)st.evictions);
  EXPECT_GT(live, 1425) << "live entries were evicted while expired ones were there";
  EXPECT_GT(st.expirations, 400u);
}

TEST_F(FileTest, DjangoStyleCull) {
  auto s = Open({{"MAX_ENTRIES", "30"}, {"CULL_FREQUENCY", "3"}});
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(s->Set("k" + std::to_string(i), "v", 0, kNever).ok());
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 30u);
  ASSERT_TRUE(s->Set("k30", "v", 0, kNever).ok());
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_GE(st.entries, 19u);  // 30 - 30/3, plus the new one, give or take rounding
  EXPECT_LE(st.entries, 23u);
  EXPECT_GE(st.evictions, 8u);
  Value v;
  EXPECT_TRUE(s->Get("k30", &v).ok());
  dir_ += "-zero";
  auto z = Open({{"MAX_ENTRIES", "10"}, {"CULL_FREQUENCY", "0"}});
  for (int i = 0; i < 11; ++i) ASSERT_TRUE(z->Set("k" + std::to_string(i), "v", 0, kNever).ok());
  ASSERT_TRUE(z->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 1u);  // all culled, then the new one
}

// The cost of a set into a full region must not grow with the number of
// entries. Counted, not timed: the files examined by eviction and by the
// periodic recounts, per set, in a full region of 1,000 and of 100,000
// entries. (Timings are printed for the record; the lead benchmarks.)
TEST_F(FileTest, EvictionCostDoesNotGrowWithEntryCount) {
  struct Run {
    double scanned_per_set;
    double us_per_set;
  };
  auto Measure = [&](int n) -> Run {
    const size_t kVal = 100;
    // Every entry file is 64 + key + value bytes.
    uint64_t per = 64 + 8 + kVal;
    dir_ = root_ + "/n" + std::to_string(n);
    auto s = Open({{"MAX_SIZE", std::to_string(per * uint64_t(n))}});
    char key[16];
    std::string val(kVal, 'v');
    int i = 0;
    for (; i < n + n / 5; ++i) {  // fill past the bound
      snprintf(key, sizeof key, "k%07d", i);
      EXPECT_TRUE(s->Set(key, val, 0, kNever).ok());
    }
    Stats a, b;
    EXPECT_TRUE(s->GetStats(&a).ok());
    EXPECT_GT(a.evictions, 0u);
    const int kSets = 4000;
    auto t0 = std::chrono::steady_clock::now();
    for (int j = 0; j < kSets; ++j, ++i) {
      snprintf(key, sizeof key, "k%07d", i);
      EXPECT_TRUE(s->Set(key, val, 0, kNever).ok());
    }
    auto t1 = std::chrono::steady_clock::now();
    EXPECT_TRUE(s->GetStats(&b).ok());
    EXPECT_LE(b.bytes_used, b.capacity);
    EXPECT_GE(b.entries, uint64_t(n) * 8 / 10) << "the region should stay nearly full";
    double scanned = double(std::stoull(Extra(b, "files_scanned")) -
                           std::stoull(Extra(a, "files_scanned")));
    Run r{scanned / kSets,
          std::chrono::duration<double, std::micro>(t1 - t0).count() / kSets};
    std::error_code ec;
    s.reset();
    fs::remove_all(dir_, ec);
    return r;
  };
  Run small = Measure(1000);
  Run large = Measure(100000);
  std::printf("[ info ] full region of 1,000: %.2f files examined and %.1f us per set; "
              "of 100,000: %.2f files examined and %.1f us per set\n",
              small.scanned_per_set, small.us_per_set, large.scanned_per_set, large.us_per_set);
  EXPECT_LT(large.scanned_per_set, 24.0);
  EXPECT_LT(large.scanned_per_set, 4 * small.scanned_per_set + 4);
}

// ---------------------------------------------------------- inspection --

TEST_F(FileTest, ListPagesWithCursorAndGlob) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "1KB"}});
  std::set<std::string> want;
  for (int i = 0; i < 250; ++i) {
    std::string k = (i % 2 ? ":1:user:" : ":1:post:") + std::to_string(i);
    ASSERT_TRUE(s->Set(k, std::string(i % 7 == 0 ? 5000 : 10, 'x'), kEncStr, kNever).ok());
    if (i % 2) want.insert(k);
  }
  ASSERT_TRUE(s->Set(":1:user:old", "x", 0, NowMs() - 5).ok());
  std::set<std::string> got;
  ListOptions lo;
  lo.glob = ":1:user:*";
  lo.limit = 17;
  int pages = 0;
  for (;;) {
    ListPage page;
    ASSERT_TRUE(s->List(lo, &page).ok());
    ASSERT_LE(page.entries.size(), 17u);
    for (auto& e : page.entries) {
      EXPECT_TRUE(got.insert(e.key).second) << "listed twice: " << e.key;
      EXPECT_EQ(e.flags, uint32_t(kEncStr)) << "compression must not show";
      int i = std::stoi(e.key.substr(8));
      EXPECT_EQ(e.value_size, i % 7 == 0 ? 5000u : 10u) << e.key;
      EXPECT_GT(e.stored_ms, 0);
    }
    ++pages;
    if (page.next_cursor.empty()) break;
    lo.cursor = page.next_cursor;
  }
  EXPECT_EQ(got, want);
  EXPECT_GE(pages, 125 / 17);
  // Expired ones only on request.
  ListOptions all;
  all.limit = 100000;
  all.include_expired = true;
  all.glob = "*old";
  ListPage page;
  ASSERT_TRUE(s->List(all, &page).ok());
  ASSERT_EQ(page.entries.size(), 1u);
  EXPECT_EQ(page.entries[0].key, ":1:user:old");
  lo.cursor = "zz/12";
  EXPECT_EQ(s->List(lo, &page).code(), Status::Code::kInvalidArgument);
  lo.cursor = "0a/" + std::string(32, '1');  // a name of another shard
  EXPECT_EQ(s->List(lo, &page).code(), Status::Code::kInvalidArgument);
}

TEST_F(FileTest, PurgeExpiredMatchingClearAndStaleTemporaryFiles) {
  auto s = Open();
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(s->Set("k" + std::to_string(i), "v", 0, i < 5 ? NowMs() - 1 : kNever).ok());
  // A dead writer's temporary file, 20 minutes old, and a live writer's, new.
  std::string shard = dir_ + "/" + file::EntryName("k7").substr(0, 2);
  std::string stale = shard + "/.tmp.99999.00000000deadbeef";
  std::string fresh = shard + "/.tmp.99999.00000000cafebabe";
  WriteAll(stale, "half an entry");
  WriteAll(fresh, "half an entry");
  struct timespec old[2];
  old[0].tv_sec = old[1].tv_sec = time(nullptr) - 1200;
  old[0].tv_nsec = old[1].tv_nsec = 0;
  ASSERT_EQ(utimensat(AT_FDCWD, stale.c_str(), old, 0), 0);
  uint64_t n = 0;
  ASSERT_TRUE(s->PurgeExpired(&n).ok());
  EXPECT_EQ(n, 5u);
  EXPECT_FALSE(Exists(stale));
  EXPECT_TRUE(Exists(fresh));
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 15u);
  EXPECT_EQ(st.expirations, 5u);
  ASSERT_TRUE(s->PurgeMatching("k1*", &n).ok());
  EXPECT_EQ(n, 10u);  // k10..k19
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 5u);
  // A file that is not ours in the directory is left alone by clear.
  WriteAll(dir_ + "/README", "mine");
  ASSERT_TRUE(s->Clear().ok());
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 0u);
  EXPECT_EQ(st.bytes_used, 0u);
  uint64_t files, bytes;
  Census(&files, &bytes);
  EXPECT_EQ(files, 0u);
  EXPECT_TRUE(Exists(dir_ + "/README"));
  EXPECT_TRUE(Exists(fresh));  // someone may still be writing it
  Value v;
  EXPECT_TRUE(s->Get("k9", &v).IsNotFound());
  EXPECT_TRUE(s->Peek("k9", &v).IsNotFound());
}

TEST_F(FileTest, PeekCountsNothing) {
  auto s = Open();
  ASSERT_TRUE(s->Set("k", "v", 0, kNever).ok());
  Value v;
  ASSERT_TRUE(s->Peek("k", &v).ok());
  EXPECT_EQ(v.data, "v");
  EXPECT_TRUE(s->Peek("nope", &v).IsNotFound());
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.hits, 0u);
  EXPECT_EQ(st.misses, 0u);
}

TEST_F(FileTest, LostLedgerIsRebuiltFromTheFiles) {
  {
    auto s = Open();
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(s->Set("k" + std::to_string(i), "value", 0, kNever).ok());
  }
  ASSERT_EQ(unlink((dir_ + "/regioncache.stats").c_str()), 0);
  auto s = Open();
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 50u);
  uint64_t files, bytes;
  Census(&files, &bytes);
  EXPECT_EQ(st.bytes_used, bytes);
  // A ledger of the wrong size (another version, damage) is rebuilt too.
  s.reset();
  WriteAll(dir_ + "/regioncache.stats", "junk");
  s = Open();
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.entries, 50u);
}

// ---------------------------------------------------------- compression --

TEST_F(FileTest, ZstdAboveThresholdIsInvisibleToTheCaller) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "1KB"}});
  std::string text;
  for (int i = 0; text.size() < 200000; ++i) text += "line " + std::to_string(i % 50) + " of text\n";
  ASSERT_TRUE(s->Set("big", text, kEncStr, kNever).ok());
  ASSERT_TRUE(s->Set("small", "tiny text", kEncStr, kNever).ok());
  std::string noise = ValueFor("noise", 50000);  // 32 letters: compresses somewhat
  std::mt19937_64 rng(7);
  std::string random(50000, '\0');
  for (auto& c : random) c = char(rng());
  ASSERT_TRUE(s->Set("random", random, kEncBytes, kNever).ok());
  file::EntryHeader h;
  std::string raw = ReadAll(PathOf("big"));
  std::memcpy(&h, raw.data(), 64);
  EXPECT_EQ(h.flags, uint32_t(kEncStr | kFlagZstd));
  EXPECT_EQ(h.raw_len, text.size());
  EXPECT_LT(raw.size(), text.size() / 10);
  raw = ReadAll(PathOf("small"));
  std::memcpy(&h, raw.data(), 64);
  EXPECT_EQ(h.flags, uint32_t(kEncStr));
  raw = ReadAll(PathOf("random"));
  std::memcpy(&h, raw.data(), 64);
  EXPECT_EQ(h.flags, uint32_t(kEncBytes)) << "incompressible data is stored as is";
  Value v;
  ASSERT_TRUE(s->Get("big", &v).ok());
  EXPECT_EQ(v.data, text);
  EXPECT_EQ(v.flags, uint32_t(kEncStr));
  ASSERT_TRUE(s->Get("random", &v).ok());
  EXPECT_EQ(v.data, random);
  // A store without compression still reads compressed entries.
  auto plain = Open();
  ASSERT_TRUE(plain->Get("big", &v).ok());
  EXPECT_EQ(v.data, text);
  // The flag is the store's own.
  EXPECT_EQ(s->Set("x", "y", kEncBytes | kFlagZstd, kNever).code(),
            Status::Code::kInvalidArgument);
  // Compressed and damaged: still a miss, not a crash.
  raw = ReadAll(PathOf("big"));
  raw[200] ^= 0x55;
  WriteAll(PathOf("big"), raw);
  StartLog();
  EXPECT_TRUE(s->Get("big", &v).IsNotFound());
  TakeLog();
  // The size bound counts what is on disk.
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  uint64_t files, bytes;
  Census(&files, &bytes);
  EXPECT_EQ(st.bytes_used, bytes);
}

// A caller's buffers (ReadTarget): the value lands in the first buffer when
// it fits, in a Whole buffer of its size when not, and in data when it was
// compressed or no buffer was lent; a file holding another key (of another
// length, so the lent bytes are more of its key) is still a miss.
class VecTarget final : public ReadTarget {
 public:
  explicit VecTarget(size_t first) : first_(first) {}
  std::span<char> First() override { return {first_.data(), first_.size()}; }
  char* Whole(size_t n) override {
    ++wholes;
    whole_.assign(n, '\0');
    return whole_.data();
  }
  bool InFirst(const Value& v) const { return v.at == first_.data(); }
  bool InWhole(const Value& v) const { return v.at && v.at == whole_.data(); }
  int wholes = 0;

 private:
  std::vector<char> first_;
  std::vector<char> whole_;
};

TEST_F(FileTest, ReadsLandInTheCallersBuffers) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "64KB"}, {"MAX_ITEM_SIZE", "4MB"}});
  std::mt19937_64 rng(11);
  for (size_t size : {size_t(0), size_t(1), size_t(100), size_t(4095), size_t(4096),
                      size_t(4097), size_t(3u << 20)}) {
    SCOPED_TRACE(size);
    std::string val(size, '\0');
    for (auto& c : val) c = char(rng());  // incompressible: stored as is
    ASSERT_TRUE(s->Set("k", val, kEncBytes, kNever).ok());
    VecTarget tgt(4096);
    Value v;
    v.target = &tgt;
    ASSERT_TRUE(s->Get("k", &v).ok());
    EXPECT_EQ(v.bytes(), val);
    EXPECT_EQ(v.flags, uint32_t(kEncBytes));
    EXPECT_TRUE(v.data.empty()) << "copied into data as well";
    if (size == 0) EXPECT_EQ(v.at, nullptr);  // nothing read past the key
    else if (size <= 4096) EXPECT_TRUE(tgt.InFirst(v));
    else EXPECT_TRUE(tgt.InWhole(v) && tgt.wholes == 1);
  }
  // Compressed: decompressed into data.
  std::string text;
  for (int i = 0; text.size() < 200000; ++i) text += "line " + std::to_string(i % 50) + "\n";
  ASSERT_TRUE(s->Set("text", text, kEncStr, kNever).ok());
  VecTarget tgt(4096);
  Value v;
  v.target = &tgt;
  ASSERT_TRUE(s->Get("text", &v).ok());
  EXPECT_EQ(v.at, nullptr);
  EXPECT_EQ(v.bytes(), text);
  // No first buffer lent: the value comes in data.
  VecTarget none(0);
  v.target = &none;
  ASSERT_TRUE(s->Set("k", "short", kEncStr, kNever).ok());
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.at, nullptr);
  EXPECT_EQ(v.data, "short");
  // Another key's file under this key's name, longer and shorter keys.
  ASSERT_TRUE(s->Set("a", std::string(100, 'a'), kEncBytes, kNever).ok());
  ASSERT_TRUE(s->Set("a-much-longer-key", std::string(3000, 'L'), kEncBytes, kNever).ok());
  ASSERT_TRUE(s->Set("b", std::string(100, 'b'), kEncBytes, kNever).ok());
  std::string long_file = ReadAll(PathOf("a-much-longer-key"));
  WriteAll(PathOf("a"), long_file);
  WriteAll(PathOf("a-much-longer-key"), ReadAll(PathOf("b")));
  StartLog();
  v.target = &tgt;
  EXPECT_TRUE(s->Get("a", &v).IsNotFound());
  EXPECT_TRUE(s->Get("a-much-longer-key", &v).IsNotFound());
  std::string err = TakeLog();
  EXPECT_NE(err.find("holds another key"), std::string::npos) << err;
  EXPECT_FALSE(Exists(PathOf("a")));
  // Damage under a lent buffer: a miss.
  ASSERT_TRUE(s->Set("d", std::string(2000, 'd'), kEncBytes, kNever).ok());
  std::string raw = ReadAll(PathOf("d"));
  raw[raw.size() - 3] ^= 1;
  WriteAll(PathOf("d"), raw);
  StartLog();
  EXPECT_TRUE(s->Get("d", &v).IsNotFound());
  TakeLog();
  ASSERT_TRUE(s->Get("b", &v).ok());
  EXPECT_EQ(v.bytes(), std::string(100, 'b'));
}

// A large value is read straight into the result: the peak memory of a
// process that reads one is about one copy of it, not two or three.
TEST_F(FileTest, LargeValueReadNeedsAboutOneCopy) {
  const size_t kBig = 256u << 20;
  {
    auto s = Open({{"MAX_ITEM_SIZE", "300MB"}});
    std::string big(kBig, 'q');
    for (size_t i = 0; i < kBig; i += 4096) big[i] = char(i >> 12);
    ASSERT_TRUE(s->Set("big", big, kEncBytes, kNever).ok());
  }
  int status = 0;
  std::string out = testing::ChildOutput([&] {
    std::unique_ptr<Store> s;
    if (!OpenFileStore(StoreSpec{"files", "file", dir_, {{"MAX_ITEM_SIZE", "300MB"}}}, &s).ok())
      _exit(2);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    Value v;
    if (!s->Get("big", &v).ok() || v.data.size() != kBig) _exit(3);
    for (size_t i = 0; i < kBig; i += 4096)
      if (v.data[i] != char(i >> 12)) _exit(4);
    getrusage(RUSAGE_SELF, &after);
    long grew_kb = after.ru_maxrss - before.ru_maxrss;
    return std::string(reinterpret_cast<const char*>(&grew_kb), sizeof grew_kb);
  }, &status);
  long grew_kb = -1;
  ASSERT_EQ(out.size(), sizeof grew_kb);
  std::memcpy(&grew_kb, out.data(), sizeof grew_kb);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::printf("[ info ] reading a %zu MB value grew the peak RSS by %ld MB\n", kBig >> 20,
              grew_kb >> 10);
  EXPECT_LT(grew_kb * 1024.0, 1.5 * kBig);
}

// --------------------------------------------------------- concurrency --

TEST_F(FileTest, ThreadsHammeringTheSameKeys) {
  auto s = Open({{"MAX_SIZE", "256KB"}});
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  ASSERT_TRUE(s->Set("counter", "0", kEncInt, kNever).ok());
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 r(t);
      Value v;
      for (int i = 0; i < 1500; ++i) {
        std::string k = "k" + std::to_string(r() % 40);
        switch (r() % 5) {
          case 0: s->Delete(k); break;
          case 1: {
            int64_t n;
            if (!s->Incr("counter", 1, &n).ok()) bad++;
            break;
          }
          case 2:
            if (s->Get(k, &v).ok() && v.data != ValueFor(k, v.data.size())) bad++;
            break;
          default: s->Set(k, ValueFor(k, r() % 9000), 0, kNever);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  Value v;
  ASSERT_TRUE(s->Get("counter", &v).ok() || true);
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(Extra(st, "corrupt_removed"), "0");
  uint64_t files, bytes;
  Census(&files, &bytes);
  EXPECT_EQ(st.entries, files);
  EXPECT_EQ(st.bytes_used, bytes);
}

// Touch rewrites 16 bytes in place while readers read the same file; a
// reader catching the write half-done must retry, never call it damage.
TEST_F(FileTest, TouchDuringReadsIsNeverDamage) {
  auto s = Open();
  ASSERT_TRUE(s->Set("k", ValueFor("k", 1000), 0, NowMs() + 3600000).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> misses{0};
  std::thread reader([&] {
    auto r = Open();
    Value v;
    while (!stop.load())
      if (!r->Get("k", &v).ok()) misses++;
  });
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(s->Touch("k", NowMs() + 3600000 + i).ok());
  stop = true;
  reader.join();
  EXPECT_EQ(misses.load(), 0);
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(Extra(st, "corrupt_removed"), "0");
}

// Runs fn in n forked children at once (released together) and checks they
// all exit 0.
void InChildren(int n, const std::function<int(int)>& fn) {
  EXPECT_EQ(testing::RunInChildrenAtOnce(n, fn), "");
}

// `children` processes at once each add 1 to "n" `times` times, through a
// store of their own (own_store) or through s, opened before the fork: "n"
// ends exactly at the sum.
void FileTest::ExpectExactCountFromChildren(Store* s, int children, int times, bool own_store) {
  ASSERT_TRUE(s->Set("n", "0", kEncInt, kNever).ok());
  InChildren(children, [&](int) {
    std::unique_ptr<Store> own;
    if (own_store && !OpenFileStore(StoreSpec{"files", "file", dir_, {}}, &own).ok()) return 2;
    Store* c = own_store ? own.get() : s;
    int64_t r;
    for (int i = 0; i < times; ++i)
      if (!c->Incr("n", 1, &r).ok()) return 3;
    return 0;
  });
  Value v;
  ASSERT_TRUE(s->Get("n", &v).ok());
  EXPECT_EQ(v.data, std::to_string(children * times));
}

TEST_F(FileTest, ProcessesIncrementAndAddAtomically) {
  auto s = Open();
  ExpectExactCountFromChildren(s.get(), 4, 300, true);
  // Many processes add the same fresh keys at once: exactly one wins each.
  const int kKeys = 50;
  int winners[2];
  ASSERT_EQ(pipe(winners), 0);
  InChildren(6, [&](int c) {
    std::unique_ptr<Store> st;
    if (!OpenFileStore(StoreSpec{"files", "file", dir_, {}}, &st).ok()) return 2;
    for (int k = 0; k < kKeys; ++k) {
      Status a = st->Add("add" + std::to_string(k), std::to_string(c), 0, kNever);
      if (a.ok()) {
        char b = char(k);
        if (write(winners[1], &b, 1) != 1) return 4;
      } else if (!a.IsNotStored()) {
        return 3;
      }
    }
    return 0;
  });
  close(winners[1]);
  std::vector<int> wins(kKeys, 0);
  char b;
  while (read(winners[0], &b, 1) == 1) wins[size_t(b)]++;
  close(winners[0]);
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(wins[size_t(k)], 1) << "key add" << k;
}

// A store object opened before fork() and used by parent and child at once:
// the child must get locks of its own, not share the parent's.
TEST_F(FileTest, StoreOpenedBeforeForkStillLocks) {
  auto s = Open();
  ExpectExactCountFromChildren(s.get(), 3, 400, false);
}

// Names in an entry's shard directory that start with `prefix`.
std::vector<std::string> NamesInShardOf(const std::string& dir, std::string_view key,
                                        std::string_view prefix) {
  std::string name = file::EntryName(key);
  std::vector<std::string> out;
  DIR* d = opendir((dir + "/" + name.substr(0, 2)).c_str());
  if (!d) return out;
  while (dirent* de = readdir(d))
    if (std::string_view(de->d_name).starts_with(prefix)) out.emplace_back(de->d_name);
  closedir(d);
  return out;
}

// A second key whose entry lands in the same shard as `key`.
std::string KeyInSameShard(std::string_view key) {
  int shard = file::ShardOfName(file::EntryName(key));
  for (int i = 0;; ++i) {
    std::string k = "other" + std::to_string(i);
    if (file::ShardOfName(file::EntryName(k)) == shard) return k;
  }
}

// With RENAME_EXCHANGE (every file system the tests run on), an overwrite
// leaves the old file as this process's own spare; without it
// (REGIONCACHE_FILE_NO_EXCHANGE), the old file goes to a shared spare slot
// and no own spare is kept. Both keep the value and the counts right.
TEST_F(FileTest, OverwriteKeepsOldFileAsOwnSpareOrSharedSpare) {
  for (bool exchange : {true, false}) {
    SCOPED_TRACE(exchange ? "exchange" : "no exchange");
    if (exchange) unsetenv("REGIONCACHE_FILE_NO_EXCHANGE");
    else setenv("REGIONCACHE_FILE_NO_EXCHANGE", "1", 1);
    std::error_code ec;
    fs::remove_all(dir_, ec);
    {
      auto s = Open();
      for (int i = 0; i < 5; ++i)
        ASSERT_TRUE(s->Set("k", std::string(100 + i, char('a' + i)), kEncBytes, kNever).ok());
      Value v;
      ASSERT_TRUE(s->Get("k", &v).ok());
      EXPECT_EQ(v.data, std::string(104, 'e'));
      std::string own = ".tmp." + std::to_string(getpid()) + ".";
      size_t owns = NamesInShardOf(dir_, "k", own).size();
      size_t shared = NamesInShardOf(dir_, "k", ".spare.").size();
      if (exchange) {
        EXPECT_EQ(owns, 1u);
        EXPECT_EQ(shared, 0u);
      } else {
        EXPECT_EQ(owns, 0u);
        EXPECT_GE(shared, 1u);
      }
      Stats st;
      ASSERT_TRUE(s->GetStats(&st).ok());
      EXPECT_EQ(st.entries, 1u);
    }
    // A store that closes removes its own spares.
    EXPECT_TRUE(NamesInShardOf(dir_, "k", ".tmp.").empty());
  }
  unsetenv("REGIONCACHE_FILE_NO_EXCHANGE");
}

// A child forked from a process that holds own spares must not rewrite
// them (its parent goes on doing so): it makes its own, under its own pid,
// and the parent's spare is still the parent's afterwards.
TEST_F(FileTest, ForkedChildForgetsParentOwnSpares) {
  if (getenv("REGIONCACHE_FILE_NO_EXCHANGE")) GTEST_SKIP() << "own spares need RENAME_EXCHANGE";
  auto s = Open();
  std::string other = KeyInSameShard("k");
  ASSERT_TRUE(s->Set("k", "parent-1", kEncStr, kNever).ok());
  ASSERT_TRUE(s->Set("k", "parent-2", kEncStr, kNever).ok());
  std::string parent_own = ".tmp." + std::to_string(getpid()) + ".";
  auto before = NamesInShardOf(dir_, "k", parent_own);
  ASSERT_EQ(before.size(), 1u);
  std::string spare_path = (fs::path(PathOf("k")).parent_path() / before[0]).string();
  std::string spare_before = ReadAll(spare_path);
  ASSERT_NE(spare_before.find("parent-1"), std::string::npos);  // the exchanged-out file

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (int i = 0; i < 20; ++i) {
      std::string val = "child-" + std::to_string(i);
      if (!s->Set(other, val, kEncStr, kNever).ok()) _exit(2);
      Value v;
      if (!s->Get(other, &v).ok() || v.data != val) _exit(3);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0);
  // The parent's own spare was not touched; the child made one of its own.
  EXPECT_EQ(ReadAll(spare_path), spare_before);
  EXPECT_EQ(NamesInShardOf(dir_, "k", ".tmp." + std::to_string(pid) + ".").size(), 1u);
  // And the parent goes on rewriting it.
  ASSERT_TRUE(s->Set("k", "parent-3", kEncStr, kNever).ok());
  Value v;
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.data, "parent-3");
  ASSERT_TRUE(s->Get(other, &v).ok());
  EXPECT_EQ(v.data, "child-19");
}

// A writer killed with SIGKILL at a random moment, 50 times: every entry
// read afterwards is whole or missing, no lock is left held, and a sweep
// brings the counts back to the truth.
TEST_F(FileTest, KillNineWriterFiftyRounds) {
  auto s = Open({{"MAX_SIZE", "8MB"}});
  testing::KillNineRounds kills(42, std::chrono::microseconds(2000),
                               std::chrono::microseconds(20000));
  int killed_with_temp = 0;
  for (int round = 0; round < 50; ++round) {
    std::string killed = kills.Round([&](const testing::KillNineRounds::Ready& ready) {
      std::unique_ptr<Store> c;
      if (!OpenFileStore(StoreSpec{"t", "file", dir_, {{"MAX_SIZE", "8MB"}}}, &c).ok()) _exit(2);
      std::mt19937 r(getpid());
      auto [keys, full] = testing::MakeKeyedValues(200, 400000);
      ready();
      int64_t n;
      for (;;) {
        size_t j = r() % keys.size();
        switch (r() % 6) {
          case 0: c->Delete(keys[j]); break;
          case 1: c->Incr("counter", 1, &n); break;
          case 2: c->Touch(keys[j], NowMs() + 3600000); break;
          default:
            c->Set(keys[j], std::string_view(full[j]).substr(0, r() % 400000), kEncBytes, kNever);
        }
      }
    });
    ASSERT_EQ(killed, "") << "round " << round;
    uint64_t files, bytes, temps;
    Census(&files, &bytes, &temps);
    killed_with_temp += temps > 0;
    ListOptions lo;
    lo.limit = 1000000;
    ListPage page;
    ASSERT_TRUE(s->List(lo, &page).ok()) << "round " << round;
    Value v;
    for (const auto& e : page.entries) {
      Status st = s->Get(e.key, &v);
      if (st.IsNotFound()) continue;  // whole or missing
      ASSERT_TRUE(st.ok()) << st.ToString();
      if (e.key == "counter") {
        ASSERT_EQ(v.flags, uint32_t(kEncInt));
        continue;
      }
      if (e.key == "survivor") {
        ASSERT_EQ(v.data, "yes");
        continue;
      }
      ASSERT_EQ(v.data, ValueFor(e.key, v.data.size())) << "torn value for " << e.key;
    }
    // No lock left held: these would hang otherwise.
    ASSERT_TRUE(s->Set("survivor", "yes", 0, kNever).ok());
    int64_t n;
    Status inc = s->Incr("counter", 0, &n);
    ASSERT_TRUE(inc.ok() || inc.IsNotFound()) << inc.ToString();
  }
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(Extra(st, "corrupt_removed"), "0") << "a kill must never leave a visible partial file";
  // A sweep recounts every shard: the ledger equals the directory again.
  uint64_t n = 0;
  ASSERT_TRUE(s->PurgeExpired(&n).ok());
  ASSERT_TRUE(s->GetStats(&st).ok());
  uint64_t files, bytes;
  Census(&files, &bytes);
  EXPECT_EQ(st.entries, files);
  EXPECT_EQ(st.bytes_used, bytes);
  EXPECT_LE(st.bytes_used, st.capacity);
  std::printf("[ info ] %d of 50 kills left a temporary file behind\n", killed_with_temp);
  EXPECT_GT(killed_with_temp, 5) << "the kills should land mid-write often";
}

}  // namespace
}  // namespace regioncache
