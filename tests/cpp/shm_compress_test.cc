// Compressed values in the shared-memory store (OPTIONS COMPRESS_MIN_SIZE,
// COMPRESS_LEVEL; issue 17): round trips through every read path, values
// that stay plain, frames that lie (changed in the segment from outside,
// with the entry's checksum made to match, so only the frame can tell), and
// processes with different settings sharing one segment.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/compress.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/shm_store.h"
#include "regioncache/store.h"
#include "shm/shm_layout.h"
#include "support/test_support.h"

namespace regioncache {
namespace {

using Opts = std::map<std::string, std::string>;

// About 17 KB of a page's HTML: repeated markup around varied words, as a
// rendered list page is (compresses 3-6x).
std::string HtmlPage(int seed, size_t size = 17 * 1024) {
  static const char* words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
                                "golf", "hotel", "india", "juliet", "kilo", "lima",
                                "mike", "november", "oscar", "papa", "quebec", "romeo"};
  std::mt19937 r(seed);
  std::string s = "<!DOCTYPE html><html><head><title>Page " + std::to_string(seed) +
                  "</title><link rel=\"stylesheet\" href=\"/static/site.css\"></head><body>"
                  "<table class=\"items\">";
  for (int row = 0; s.size() < size - 40; ++row) {
    s += "<tr class=\"row\"><td class=\"id\">" + std::to_string(r() % 100000) +
         "</td><td class=\"name\"><a href=\"/item/" + std::to_string(r() % 100000) + "/\">";
    for (int w = 0; w < 3; ++w) s += std::string(words[r() % 18]) + " ";
    s += "</a></td><td class=\"price\">" + std::to_string(r() % 1000) + "." +
         std::to_string(r() % 100) + "</td></tr>\n";
  }
  s += "</table></body></html>";
  return s;
}

std::string RandomBytes(size_t n, int seed) {
  std::mt19937_64 r(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(r());
  return s;
}

class ShmCompressTest : public ::testing::Test {
 protected:
  Status OpenStore(std::unique_ptr<Store>* s, Opts opts = {}) {
    if (!opts.count("SIZE") && !opts.count("READ_ONLY")) opts["SIZE"] = "4MB";
    if (!opts.count("MAX_ITEM_SIZE") && !opts.count("READ_ONLY")) opts["MAX_ITEM_SIZE"] = "64KB";
    return OpenShmStore(StoreSpec{"t", "shm", name_, opts}, s);
  }
  std::unique_ptr<Store> Open(Opts opts = {}) {
    std::unique_ptr<Store> s;
    Status st = OpenStore(&s, std::move(opts));
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }

  // A raw read-write mapping of the segment, as another process has.
  struct Raw {
    char* base = nullptr;
    size_t size = 0;
    ~Raw() {
      if (base) munmap(base, size);
    }
  };
  void MapRaw(Raw* raw) {
    int fd = shm_open(ShmSegmentName(name_).c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    raw->size = static_cast<size_t>(st.st_size);
    void* m = mmap(nullptr, raw->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    ASSERT_NE(m, MAP_FAILED);
    raw->base = static_cast<char*>(m);
  }
  // The live entry holding key, found by walking the arena's blocks.
  static shm::Item* FindItem(const Raw& raw, std::string_view key) {
    auto* h = reinterpret_cast<shm::Header*>(raw.base);
    for (uint64_t pos = 0; pos < h->arena_size;) {
      auto* it = reinterpret_cast<shm::Item*>(raw.base + h->arena_off + pos);
      if (it->head.state == shm::kStateLive && it->key_len == key.size() &&
          std::memcmp(reinterpret_cast<char*>(it) + shm::kItemHeader, key.data(), key.size()) == 0)
        return it;
      pos += uint64_t(1) << it->head.order;
    }
    return nullptr;
  }
  static char* ValueBytes(shm::Item* it) {
    return reinterpret_cast<char*>(it) + shm::kItemHeader + it->key_len;
  }
  // Makes the entry's checksum agree with its (changed) bytes again, so
  // that only the frame itself can betray the change.
  static void Reseal(shm::Item* it) {
    it->check = XXH3_64bits_withSeed(ValueBytes(it), it->val_len, it->hash ^ it->flags);
  }
  static uint64_t Extra(const Stats& st, const std::string& name) {
    for (const auto& [k, v] : st.extra)
      if (k == name) return std::stoull(v);
    ADD_FAILURE() << "no " << name << " in stats";
    return 0;
  }

  testing::ScratchShmRegion region_{
      std::string("gzstd-") + ::testing::UnitTest::GetInstance()->current_test_info()->name()};
  const std::string& name_ = region_.name();
  testing::LogCapture log_;
};

TEST_F(ShmCompressTest, PageRoundTripsThroughEveryReadPath) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "1KB"}});
  std::string page = HtmlPage(1);
  ASSERT_TRUE(s->Set("page", page, kEncStr, kNever).ok());
  Value v;
  ASSERT_TRUE(s->Get("page", &v).ok());
  EXPECT_EQ(v.data, page);
  EXPECT_EQ(v.flags, kEncStr);  // kFlagZstd never leaves the store
  Value p;
  ASSERT_TRUE(s->Peek("page", &p).ok());
  EXPECT_EQ(p.data, page);
  EXPECT_EQ(p.flags, kEncStr);
  std::vector<std::string_view> keys = {"page", "absent", "page"};
  std::vector<Value> values;
  std::vector<bool> found;
  ASSERT_TRUE(s->GetMany(keys, &values, &found).ok());
  EXPECT_EQ(found, (std::vector<bool>{true, false, true}));
  EXPECT_EQ(values[0].data, page);
  EXPECT_EQ(values[2].flags, kEncStr);
  // Listing shows the size the value was given with, and its codec flags.
  ListPage lp;
  ASSERT_TRUE(s->List(ListOptions{}, &lp).ok());
  ASSERT_EQ(lp.entries.size(), 1u);
  EXPECT_EQ(lp.entries[0].value_size, page.size());
  EXPECT_EQ(lp.entries[0].flags, kEncStr);
  // Stored compressed: one block of a quarter or less of the page's.
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_LE(st.bytes_used, 8192u) << "a " << page.size() << "-byte page";
  EXPECT_EQ(st.hits, 3u);
  EXPECT_EQ(st.misses, 1u);
  EXPECT_EQ(Extra(st, "compress_min_size"), 1024u);
  EXPECT_EQ(Extra(st, "compress_level"), 1u);
  // ... and not as plain text anywhere in the segment.
  Raw raw;
  MapRaw(&raw);
  EXPECT_EQ(memmem(raw.base, raw.size, page.data() + 4000, 200), nullptr);
  shm::Item* it = FindItem(raw, "page");
  ASSERT_NE(it, nullptr);
  EXPECT_EQ(it->flags, kEncStr | kFlagZstd);
  EXPECT_LT(it->val_len, page.size() / 3);
}

TEST_F(ShmCompressTest, WritesOfEveryKindCompressAndCompareWhole) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "2KB"}, {"COMPRESS_LEVEL", "3"}});
  std::string a = HtmlPage(2), b = HtmlPage(3);
  ASSERT_TRUE(s->Add("k", a, kEncBytes, kNever).ok());
  EXPECT_TRUE(s->Add("k", b, kEncBytes, kNever).IsNotStored());
  ASSERT_TRUE(s->Replace("k", b, kEncBytes, kNever).ok());
  Value v;
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.data, b);
  // Compare-and-swap compares the value, not its frame: a near miss (same
  // length, last byte changed) is refused, the value itself accepted.
  std::string near = b;
  near.back() = '!';
  WriteItem with{"", a, kEncBytes, kNever};
  EXPECT_TRUE(s->CompareAndSwap("k", near, kEncBytes, &with).IsNotStored());
  EXPECT_TRUE(s->CompareAndSwap("k", b, kEncStr, &with).IsNotStored());  // flags differ
  ASSERT_TRUE(s->CompareAndSwap("k", b, kEncBytes, &with).ok());
  ASSERT_TRUE(s->Get("k", &v).ok());
  EXPECT_EQ(v.data, a);
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_LE(st.bytes_used, 8192u);  // the swapped-in value went in compressed
  ASSERT_TRUE(s->CompareAndSwap("k", a, kEncBytes, nullptr).ok());  // compare-and-delete
  EXPECT_TRUE(s->Get("k", &v).IsNotFound());
  // Touch keeps the frame as it is.
  ASSERT_TRUE(s->Set("t", a, kEncBytes, kNever).ok());
  ASSERT_TRUE(s->Touch("t", NowMs() + 60000).ok());
  ASSERT_TRUE(s->Get("t", &v).ok());
  EXPECT_EQ(v.data, a);
  EXPECT_GT(v.expires_ms, NowMs());
  // incr of a compressed non-number is NotANumber, as for a plain one.
  int64_t out = 0;
  EXPECT_TRUE(s->Incr("t", 1, &out).IsNotANumber());
  // The store's flag cannot be handed in.
  EXPECT_EQ(s->Set("x", a, kEncBytes | kFlagZstd, kNever).code(), Status::Code::kInvalidArgument);
  WriteItem bad{"", a, kEncBytes | kFlagZstd, kNever};
  EXPECT_EQ(s->CompareAndSwap("t", a, kEncBytes, &bad).code(), Status::Code::kInvalidArgument);
}

TEST_F(ShmCompressTest, IncompressibleValuesAndIntsStayPlain) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "1"}});
  std::string noise = RandomBytes(8000, 5);
  ASSERT_TRUE(s->Set("noise", noise, kEncBytes, kNever).ok());
  ASSERT_TRUE(s->Set("n", "12345678901234567", kEncInt, kNever).ok());
  ASSERT_TRUE(s->Set("small", "abcabcabcabcabc", kEncStr, kNever).ok());  // saves < 1/8
  Raw raw;
  MapRaw(&raw);
  for (auto [key, flags] : {std::pair<const char*, uint32_t>{"noise", kEncBytes},
                            {"n", kEncInt}, {"small", kEncStr}}) {
    shm::Item* it = FindItem(raw, key);
    ASSERT_NE(it, nullptr) << key;
    EXPECT_EQ(it->flags, flags) << key << " is stored as given";
  }
  EXPECT_EQ(std::memcmp(ValueBytes(FindItem(raw, "noise")), noise.data(), noise.size()), 0);
  int64_t out = 0;
  ASSERT_TRUE(s->Incr("n", 3, &out).ok());
  EXPECT_EQ(out, 12345678901234570);
  Value v;
  ASSERT_TRUE(s->Get("noise", &v).ok());
  EXPECT_EQ(v.data, noise);
  // A value just under COMPRESS_MIN_SIZE is not compressed; from it on it is.
  auto t = Open({{"COMPRESS_MIN_SIZE", "1KB"}});
  ASSERT_TRUE(t->Set("under", std::string(1023, 'u'), kEncBytes, kNever).ok());
  ASSERT_TRUE(t->Set("at", std::string(1024, 'a'), kEncBytes, kNever).ok());
  EXPECT_EQ(FindItem(raw, "under")->flags, kEncBytes);
  EXPECT_EQ(FindItem(raw, "at")->flags, kEncBytes | kFlagZstd);
}

TEST_F(ShmCompressTest, MaxItemSizeBoundsTheValueGiven) {
  // 64 KB of one letter compresses to a few bytes, and is refused all the
  // same: the limit is on what the caller gives (as in the file store).
  auto s = Open({{"COMPRESS_MIN_SIZE", "1KB"}});
  std::string big(64 * 1024, 'z');
  Status st = s->Set("big", big, kEncBytes, kNever);
  EXPECT_TRUE(st.IsTooLarge()) << st.ToString();
  std::string fits(64 * 1024 - 3, 'z');
  ASSERT_TRUE(s->Set("fit", fits, kEncBytes, kNever).ok());
  Value v;
  ASSERT_TRUE(s->Get("fit", &v).ok());
  EXPECT_EQ(v.data, fits);
}

TEST_F(ShmCompressTest, OptionsAreValidated) {
  std::unique_ptr<Store> s;
  for (const char* level : {"0", "20", "-1", "fast"}) {
    Status st = OpenStore(&s, {{"COMPRESS_LEVEL", level}});
    EXPECT_EQ(st.code(), Status::Code::kInvalidArgument) << level;
    EXPECT_NE(st.message().find("COMPRESS_LEVEL"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("'t'"), std::string::npos) << st.message();
  }
  Status st = OpenStore(&s, {{"COMPRESS_MIN_SIZE", "lots"}});
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("COMPRESS_MIN_SIZE"), std::string::npos) << st.message();
  ASSERT_TRUE(OpenStore(&s, {{"COMPRESS_LEVEL", "19"}, {"COMPRESS_MIN_SIZE", "0"}}).ok());
  Stats stats;
  ASSERT_TRUE(s->GetStats(&stats).ok());
  EXPECT_EQ(Extra(stats, "compress_min_size"), 0u);
  EXPECT_EQ(Extra(stats, "compress_level"), 19u);
}

// Frames that lie, each planted with a checksum that agrees: a miss, an
// error counted, a log line naming the region, the entry removed; never a
// crash, a wrong value or an allocation of what the frame claims.
TEST_F(ShmCompressTest, LyingFramesAreMissesAndErrors) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "1KB"}});
  std::string page = HtmlPage(4);
  std::vector<std::string> keys = {"oversize", "truncated", "short-claim", "long-claim",
                                   "garbage"};
  for (const auto& k : keys) ASSERT_TRUE(s->Set(k, page, kEncStr, kNever).ok());
  Raw raw;
  MapRaw(&raw);
  // oversize: a real frame of 1 MB of 'a' (a few dozen bytes) > MAX_ITEM_SIZE.
  {
    std::string frame;
    ASSERT_TRUE(Compress(std::string(1 << 20, 'a'), 1, 1 << 20, &frame));
    shm::Item* it = FindItem(raw, "oversize");
    ASSERT_LT(frame.size(), it->val_len);
    std::memcpy(ValueBytes(it), frame.data(), frame.size());
    it->val_len = frame.size();
    Reseal(it);
  }
  // truncated: the last 10 bytes of the frame cut off.
  {
    shm::Item* it = FindItem(raw, "truncated");
    it->val_len -= 10;
    Reseal(it);
  }
  // The frame's content size field, one less and one more than the truth.
  auto patch_size = [&](const char* key, int delta) {
    shm::Item* it = FindItem(raw, key);
    auto* f = reinterpret_cast<unsigned char*>(ValueBytes(it));
    ASSERT_EQ(f[0], 0x28);  // zstd magic, little-endian 0xFD2FB528
    unsigned fhd = f[4];
    unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, dict = fhd & 3;
    size_t at = 5 + (single ? 0 : 1) + (dict == 0 ? 0 : dict == 1 ? 1 : dict == 2 ? 2 : 4);
    ASSERT_EQ(fcs_flag, 1u) << "a 17 KB value's frame gives its size in 2 bytes";
    unsigned v = f[at] | (f[at + 1] << 8);  // content size - 256
    ASSERT_EQ(v + 256, page.size());
    v += delta;
    f[at] = v & 0xff;
    f[at + 1] = (v >> 8) & 0xff;
    Reseal(it);
  };
  patch_size("short-claim", -1);
  patch_size("long-claim", +1);
  // garbage: the compressed blocks overwritten after the frame header.
  {
    shm::Item* it = FindItem(raw, "garbage");
    std::mt19937 r(9);
    for (uint64_t i = 12; i < it->val_len; ++i) ValueBytes(it)[i] = static_cast<char>(r());
    Reseal(it);
  }
  Stats before;
  ASSERT_TRUE(s->GetStats(&before).ok());
  for (const auto& k : keys) {
    Value v;
    Status st = s->Get(k, &v);
    EXPECT_TRUE(st.IsNotFound()) << k << ": " << st.ToString() << " " << v.data.size();
    EXPECT_TRUE(v.data.empty()) << k;
  }
  Stats after;
  ASSERT_TRUE(s->GetStats(&after).ok());
  EXPECT_EQ(after.errors - before.errors, keys.size());
  EXPECT_EQ(after.misses - before.misses, keys.size());
  EXPECT_EQ(after.hits, before.hits);
  EXPECT_EQ(after.entries, 0u) << "each lying entry is removed";
  EXPECT_TRUE(log_.Contains("region 't' (shm): compressed entry")) << log_.Text();
  EXPECT_TRUE(log_.Contains("above the 65528 bytes")) << log_.Text();
  EXPECT_TRUE(log_.Contains("does not decompress")) << log_.Text();
  // The region goes on.
  ASSERT_TRUE(s->Set("oversize", page, kEncStr, kNever).ok());
  Value v;
  ASSERT_TRUE(s->Get("oversize", &v).ok());
  EXPECT_EQ(v.data, page);
}

TEST_F(ShmCompressTest, LyingFrameIsAMissOnEveryPath) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "1KB"}});
  std::string page = HtmlPage(5);
  Raw raw;
  MapRaw(&raw);
  auto plant = [&](const std::string& key) {
    ASSERT_TRUE(s->Set(key, page, kEncStr, kNever).ok());
    shm::Item* it = FindItem(raw, key);
    it->val_len -= 7;
    Reseal(it);
  };
  Value v;
  plant("peek");
  EXPECT_TRUE(s->Peek("peek", &v).IsNotFound());
  plant("many");
  std::vector<std::string_view> keys = {"many"};
  std::vector<Value> values;
  std::vector<bool> found;
  ASSERT_TRUE(s->GetMany(keys, &values, &found).ok());
  EXPECT_FALSE(found[0]);
  plant("cas");
  WriteItem with{"", "x", kEncStr, kNever};
  EXPECT_TRUE(s->CompareAndSwap("cas", page, kEncStr, &with).IsNotFound());
  // Listing reads only the frame's header: a truncated frame still says
  // the size it was given with; a lie there shows as the stored size.
  plant("listed");
  ListPage lp;
  ASSERT_TRUE(s->List(ListOptions{}, &lp).ok());
  ASSERT_EQ(lp.entries.size(), 1u);
  EXPECT_EQ(lp.entries[0].key, "listed");
  EXPECT_EQ(lp.entries[0].value_size, page.size());
  Stats st;
  ASSERT_TRUE(s->GetStats(&st).ok());
  EXPECT_EQ(st.errors, 3u);
}

TEST_F(ShmCompressTest, ReadOnlySessionCountsButLeavesALyingFrame) {
  std::string page = HtmlPage(6);
  {
    auto w = Open({{"COMPRESS_MIN_SIZE", "1KB"}});
    ASSERT_TRUE(w->Set("bad", page, kEncStr, kNever).ok());
    ASSERT_TRUE(w->Set("good", page, kEncStr, kNever).ok());
  }
  Raw raw;
  MapRaw(&raw);
  shm::Item* it = FindItem(raw, "bad");
  it->val_len -= 7;
  Reseal(it);
  auto ro = Open({{"READ_ONLY", "true"}});
  Value v;
  EXPECT_TRUE(ro->Get("bad", &v).IsNotFound());
  ASSERT_TRUE(ro->Get("good", &v).ok());
  EXPECT_EQ(v.data, page);
  Stats st;
  ASSERT_TRUE(ro->GetStats(&st).ok());
  EXPECT_EQ(st.errors, 1u);
  EXPECT_EQ(st.entries, 2u) << "a read-only session removes nothing";
  EXPECT_TRUE(log_.Contains("read-only: left as it is")) << log_.Text();
}

// Processes with different COMPRESS_* settings share one segment: the flag
// is per entry, so each reads what the others wrote.
TEST_F(ShmCompressTest, ProcessesWithDifferentSettingsShareOneSegment) {
  auto s = Open({{"COMPRESS_MIN_SIZE", "1KB"}, {"COMPRESS_LEVEL", "3"}});
  std::string page = HtmlPage(7), other = HtmlPage(8);
  ASSERT_TRUE(s->Set("from-compressing", page, kEncStr, kNever).ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Compression off (the default), and the segment's size taken as it is.
    std::unique_ptr<Store> c;
    if (!OpenShmStore(StoreSpec{"t", "shm", name_, {{"CREATE", "false"}}}, &c).ok()) _exit(2);
    Value v;
    if (!c->Get("from-compressing", &v).ok() || v.data != page || v.flags != kEncStr) _exit(3);
    ListPage lp;
    if (!c->List(ListOptions{}, &lp).ok() || lp.entries.size() != 1 ||
        lp.entries[0].value_size != page.size())
      _exit(4);
    if (!c->Set("from-plain", other, kEncStr, kNever).ok()) _exit(5);
    WriteItem with{"", other, kEncStr, kNever};
    if (!c->CompareAndSwap("from-compressing", page, kEncStr, &with).ok()) _exit(6);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  Value v;
  ASSERT_TRUE(s->Get("from-plain", &v).ok());
  EXPECT_EQ(v.data, other);
  ASSERT_TRUE(s->Get("from-compressing", &v).ok());
  EXPECT_EQ(v.data, other);
  Raw raw;
  MapRaw(&raw);
  EXPECT_EQ(FindItem(raw, "from-plain")->flags, kEncStr);
  EXPECT_EQ(FindItem(raw, "from-compressing")->flags, kEncStr) << "written by the plain process";
}

}  // namespace
}  // namespace regioncache
