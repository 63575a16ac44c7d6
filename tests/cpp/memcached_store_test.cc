// The memcached store against real memcached servers started on free
// loopback ports (a missing memcached binary fails these tests).
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>

#include "memcached/mc_keys.h"
#include "memcached/mc_servers.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/log.h"
#include "regioncache/store.h"
#include "support/test_support.h"

namespace regioncache {
namespace {

using testing::FreePort;
using Memcached = testing::MemcachedServer;

std::unique_ptr<Store> Open(const std::string& location,
                            std::map<std::string, std::string> options = {}) {
  StoreSpec spec{"mc", "memcached", location, std::move(options)};
  std::unique_ptr<Store> st;
  Status s = OpenStore(spec, &st);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return st;
}

TEST(MemcachedKeys, SafeKeysStayMappedKeysAreDeterministic) {
  std::string w;
  EXPECT_FALSE(mc::MakeWireKey(":1:user", &w));
  EXPECT_EQ(w, ":1:user");
  std::string long_key(300, 'k');
  EXPECT_TRUE(mc::MakeWireKey(long_key, &w));
  EXPECT_LE(w.size(), mc::kMaxKeyBytes);
  EXPECT_TRUE(mc::LooksMapped(w));
  std::string again;
  mc::MakeWireKey(long_key, &again);
  EXPECT_EQ(w, again);
  EXPECT_TRUE(mc::MakeWireKey(":1:a b", &w));
  EXPECT_EQ(w.substr(0, 6), ":1:a_b");
  EXPECT_TRUE(mc::IsSafeKey(w));
  std::string env;
  mc::WrapEnvelope("made", "payload", &env);
  std::string_view made, payload;
  ASSERT_TRUE(mc::UnwrapEnvelope(env, &made, &payload));
  EXPECT_EQ(made, "made");
  EXPECT_EQ(payload, "payload");
  EXPECT_FALSE(mc::UnwrapEnvelope("\xff\xff\xff\x7f", &made, &payload));
}

TEST(MemcachedKeys, Exptime) {
  int64_t now = 1'700'000'000'000;
  EXPECT_EQ(mc::ToExptime(0, now), 0);
  EXPECT_EQ(mc::ToExptime(now + 1500, now), 2);  // rounds up
  EXPECT_EQ(mc::ToExptime(now - 5, now), -1);
  int64_t far = now + 31LL * 86400 * 1000;
  EXPECT_EQ(mc::ToExptime(far, now), far / 1000);  // absolute beyond 30 days
}

TEST(MemcachedOptions, BadOnesNameRegionAndOption) {
  std::vector<mc::ServerAddr> servers;
  EXPECT_FALSE(mc::ParseLocation("mc", "", &servers).ok());
  EXPECT_FALSE(mc::ParseLocation("mc", "h:0", &servers).ok());
  ASSERT_TRUE(mc::ParseLocation("mc", "a:1; b ;[::1]:3,/tmp/s", &servers).ok());
  ASSERT_EQ(servers.size(), 4u);
  EXPECT_EQ(servers[1].port, 11211);
  EXPECT_TRUE(servers[3].unix_socket);
  for (auto [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"POLL_TIMEOUT", "x"}, {"SERVER_FAILURE_LIMIT", "0"}, {"BOGUS", "1"},
           {"BINARY_PROTOCOL", "maybe"}}) {
    StoreSpec spec{"myregion", "memcached", "127.0.0.1:1", {{name, value}}};
    std::unique_ptr<Store> st;
    Status s = OpenStore(spec, &st);
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
    EXPECT_NE(s.message().find("myregion"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(name), std::string::npos) << s.message();
  }
}

// The contract every store keeps runs on memcached in store_contract_test.cc;
// here what the server does its own way: decr padding, compression, keys
// memcached cannot take (mapped), and a region's keys by REGION_PREFIX.
TEST(MemcachedStore, PaddingCompressionAndMappedKeysAreInvisible) {
  Memcached m;
  ASSERT_TRUE(m.up()) << "memcached did not start (is it installed?)";
  auto st = Open(m.location(), {{"REGION_PREFIX", ":"}});
  Value v;
  EXPECT_TRUE(st->Get(":1:a", &v).IsNotFound());
  ASSERT_TRUE(st->Set(":1:a", "42", kEncInt, kNever).ok());
  ASSERT_TRUE(st->Get(":1:a", &v).ok());
  EXPECT_EQ(v.data, "42");
  int64_t r = 0;
  ASSERT_TRUE(st->Incr(":1:a", 8, &r).ok());
  EXPECT_EQ(r, 50);
  ASSERT_TRUE(st->Incr(":1:a", -45, &r).ok());
  EXPECT_EQ(r, 5);
  ASSERT_TRUE(st->Get(":1:a", &v).ok());
  EXPECT_EQ(v.data, "5");  // the server's space padding is gone
  std::string big(100000, 'z');  // compressed
  ASSERT_TRUE(st->Set(":1:big", big, kEncStr, NowMs() + 60000).ok());
  ASSERT_TRUE(st->Get(":1:big", &v).ok());
  EXPECT_EQ(v.data, big);
  EXPECT_EQ(v.flags, kEncStr);
  std::string spaced = ":1:" + std::string(260, 's') + " x";
  ASSERT_TRUE(st->Set(spaced, "sv", kEncStr, kNever).ok());
  ASSERT_TRUE(st->Get(spaced, &v).ok());
  EXPECT_EQ(v.data, "sv");

  std::vector<std::string> keys;
  ASSERT_EQ(testing::SetKeysToTheirNames(st.get(), ":1:k", 300, &keys), "");
  ListOptions lo;
  lo.glob = ":1:k1*";
  ListPage page;
  ASSERT_TRUE(st->List(lo, &page).ok());
  EXPECT_EQ(page.entries.size(), 111u);  // k1, k10-19, k100-199
  lo.glob = "*";
  lo.limit = 1000;
  ASSERT_TRUE(st->List(lo, &page).ok());
  bool saw_spaced = false;
  for (auto& e : page.entries) saw_spaced |= e.key == spaced;
  EXPECT_TRUE(saw_spaced);
  uint64_t removed = 0;
  ASSERT_TRUE(st->PurgeMatching(":1:k2*", &removed).ok());
  EXPECT_EQ(removed, 111u);
  EXPECT_TRUE(st->Get(":1:k250", &v).IsNotFound());
  Stats stats;
  ASSERT_TRUE(st->GetStats(&stats).ok());
  EXPECT_EQ(stats.entries, 300u - 111u + 3u);
  ASSERT_TRUE(st->Clear().ok());
  EXPECT_TRUE(st->Get(":1:a", &v).IsNotFound());
}

// Listing looks a page's keys up in pipelined batches, split where the
// replies (mapped keys bring their values) would fill the socket buffers:
// pages across batch boundaries still list every entry once, with its size.
TEST(MemcachedStore, ListingInBatchesCoversEveryEntryOnce) {
  Memcached server;
  auto st = Open(server.location(), {{"REGION_PREFIX", ":1:"}});
  ASSERT_TRUE(st);
  std::vector<std::string> keys;
  for (int i = 0; i < 1200; ++i) keys.push_back(":1:plain" + std::to_string(i));
  // 150 mapped keys with 1 KB values: about five batches' worth of replies.
  for (int i = 0; i < 150; ++i) keys.push_back(":1:spaced key " + std::to_string(i));
  std::string kb(1024, 'v');
  std::vector<WriteItem> items;
  for (auto& k : keys) items.push_back(WriteItem{k, k[3] == 's' ? kb : k, kEncStr, kNever});
  std::vector<size_t> failed;
  ASSERT_TRUE(st->SetMany(items, &failed).ok());
  ASSERT_TRUE(failed.empty());
  std::map<std::string, uint64_t> seen;
  ListOptions lo;
  lo.limit = 500;
  int pages = 0;
  do {
    ListPage page;
    ASSERT_TRUE(st->List(lo, &page).ok());
    ++pages;
    for (auto& e : page.entries) EXPECT_TRUE(seen.emplace(e.key, e.value_size).second) << e.key;
    lo.cursor = page.next_cursor;
  } while (!lo.cursor.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), keys.size());
  for (auto& k : keys) {
    auto it = seen.find(k);
    ASSERT_NE(it, seen.end()) << k;
    EXPECT_GE(it->second, k[3] == 's' ? kb.size() : k.size()) << k;  // envelope included
  }
  uint64_t removed = 0;
  ASSERT_TRUE(st->PurgeMatching(":1:spaced key 1*", &removed).ok());
  EXPECT_EQ(removed, 61u);  // 1, 10-19, 100-149
  Value v;
  EXPECT_TRUE(st->Get(":1:spaced key 12", &v).IsNotFound());
  EXPECT_TRUE(st->Get(":1:spaced key 2", &v).ok());
}

TEST(MemcachedStore, DeadServerIsUnavailableQuickly) {
  auto st = Open("127.0.0.1:" + std::to_string(FreePort()),
                 {{"CONNECT_TIMEOUT", "0.2"}, {"POLL_TIMEOUT", "0.2"}});
  Value v;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(st->Get(":1:a", &v).IsUnavailable());
  EXPECT_TRUE(st->Set(":1:a", "1", kEncInt, kNever).IsUnavailable());
  int64_t r;
  EXPECT_TRUE(st->Incr(":1:a", 1, &r).IsUnavailable());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

// Threads sharing a store: StoreContract.ThreadsHammeringTheSameKeys.

// A one-connection fake server on 127.0.0.1: reads a request line, then
// sends `reply` one byte every `gap` (or all at once with gap 0), then
// `forever` bytes until the client goes away.
class FakeServer {
 public:
  FakeServer(std::string reply, std::chrono::milliseconds gap, bool forever)
      : port_(FreePort()) {
    lfd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(lfd_, 8);
    th_ = std::thread([=, this] {
      while (!stop_) Serve(reply, gap, forever);
    });
  }
  void Serve(const std::string& reply, std::chrono::milliseconds gap, bool forever) {
    {
      int fd = accept(lfd_, nullptr, nullptr);
      if (fd < 0) return;
      char buf[4096];
      if (recv(fd, buf, sizeof(buf), 0) <= 0) return void(close(fd));
      for (size_t i = 0; !stop_; ++i) {
        if (i < reply.size()) {
          size_t n = gap.count() ? 1 : reply.size();
          if (send(fd, reply.data() + i, n, MSG_NOSIGNAL) <= 0) break;
          i += n - 1;
        } else if (!forever || send(fd, "0", 1, MSG_NOSIGNAL) <= 0) {
          break;
        }
        std::this_thread::sleep_for(gap.count() ? gap : std::chrono::milliseconds(10));
      }
      // Until the client gives up.
      while (!stop_ && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) != 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      close(fd);
    }
  }
  ~FakeServer() {
    stop_ = true;
    shutdown(lfd_, SHUT_RDWR);
    close(lfd_);
    th_.join();
  }
  std::string location() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  int lfd_;
  std::atomic<bool> stop_{false};
  std::thread th_;
};

int64_t MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

TEST(MemcachedDeadline, TrickledReplyEndsWithinPollTimeout) {
  // A correct reply, a byte every 20 ms: no 200 ms silence, 2+ s in all.
  std::string reply = "VALUE :1:k 1 100\r\n" + std::string(100, 'v') + "\r\nEND\r\n";
  FakeServer fake(reply, std::chrono::milliseconds(20), false);
  testing::LogCapture log;
  // (a first call may connect too: its deadline is CONNECT_TIMEOUT + POLL_TIMEOUT)
  auto st = Open(fake.location(), {{"POLL_TIMEOUT", "0.2"}, {"CONNECT_TIMEOUT", "0.05"}});
  Value v;
  auto t0 = std::chrono::steady_clock::now();
  Status s = st->Get(":1:k", &v);
  int64_t took = MsSince(t0);
  std::string logged = log.Take();
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_LT(took, 400) << "a trickled reply held Get " << took << " ms";
  EXPECT_NE(s.message().find(fake.location()), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("POLL_TIMEOUT"), std::string::npos) << s.message();
  // Returned to the caller, who logs it (once): the store does not log it too.
  EXPECT_EQ(logged.find("region 'mc' (memcached): memcached server " + fake.location()),
            std::string::npos)
      << logged;
  // Idle for over a second, the watchdog sleeps; the next call wakes it.
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  t0 = std::chrono::steady_clock::now();
  s = st->Get(":1:k", &v);
  took = MsSince(t0);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_LT(took, 400) << "after an idle second, a trickled reply held Get " << took << " ms";
  EXPECT_NE(s.message().find("POLL_TIMEOUT"), std::string::npos) << s.message();
}

TEST(MemcachedDeadline, ServerFailingInsideABatchThatAnsweredIsLogged) {
  // Two servers, one real and one that trickles: get_many answers with the
  // real one's values, and the failure it swallowed is logged naming the other.
  Memcached real;
  FakeServer fake("VALUE x 1 100\r\n", std::chrono::milliseconds(50), false);
  // The failed server stays in the continuum (its keys are not moved to the
  // real one) and is tried again at once.
  auto st = Open(real.location() + ";" + fake.location(),
                 {{"POLL_TIMEOUT", "0.2"}, {"CONNECT_TIMEOUT", "0.2"},
                  {"REMOVE_FAILED_SERVERS", "false"}, {"RETRY_TIMEOUT", "0"}});
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.push_back(":1:k" + std::to_string(i));
  int stored = 0;
  for (const auto& k : keys) stored += st->Set(k, "v", 0, kNever).ok();
  ASSERT_GT(stored, 0) << "no key went to the real server";
  ASSERT_LT(stored, 40) << "no key went to the fake server";
  testing::LogCapture log;
  std::vector<std::string_view> views(keys.begin(), keys.end());
  std::vector<Value> values;
  std::vector<bool> found;
  Status s = st->GetMany(views, &values, &found);
  std::string logged = log.Take();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(std::count(found.begin(), found.end(), true), stored);
  EXPECT_NE(logged.find("region 'mc' (memcached): memcached server " + fake.location()),
            std::string::npos)
      << logged;
}

TEST(MemcachedDeadline, HugeClaimEndsAtOnce) {
  FakeServer fake("VALUE :1:k 1 2147483648\r\n", std::chrono::milliseconds(0), true);
  auto st = Open(fake.location(), {{"POLL_TIMEOUT", "5"}});
  Value v;
  auto t0 = std::chrono::steady_clock::now();
  Status s = st->Get(":1:k", &v);
  int64_t took = MsSince(t0);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_LT(took, 500);
  EXPECT_NE(s.message().find("MAX_ITEM_SIZE"), std::string::npos) << s.message();
}

TEST(MemcachedDeadline, GarbageIsUnavailableWithAPrintableMessage) {
  FakeServer fake(std::string("\xff\xfe\x01garbage\r\n", 12), std::chrono::milliseconds(0),
                  false);
  auto st = Open(fake.location(), {{"POLL_TIMEOUT", "0.2"}});
  Value v;
  Status s = st->Get(":1:k", &v);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find(fake.location()), std::string::npos) << s.message();
  for (char c : s.message()) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << s.message();
}

TEST(MemcachedDeadline, StoppedServerAndForkedChildKeepTheDeadline) {
  Memcached m;
  ASSERT_TRUE(m.up());
  auto st = Open(m.location(), {{"POLL_TIMEOUT", "0.2"}});
  ASSERT_TRUE(st->Set(":1:k", "v", kEncStr, kNever).ok());
  m.Stop();
  Value sv;
  auto t0 = std::chrono::steady_clock::now();
  Status ss = st->Get(":1:k", &sv);
  EXPECT_TRUE(ss.IsUnavailable()) << ss.ToString();
  EXPECT_LT(MsSince(t0), 400);
  m.Continue();
  // A child forked after the store has run its watchdog needs its own.
  std::string reply = "VALUE :1:k 1 100\r\n" + std::string(100, 'v') + "\r\nEND\r\n";
  FakeServer fake(reply, std::chrono::milliseconds(20), false);
  auto slow = Open(fake.location(), {{"POLL_TIMEOUT", "0.2"}, {"CONNECT_TIMEOUT", "0.05"}});
  Value v;
  EXPECT_FALSE(slow->Get(":1:k", &v).ok());  // starts the watchdog in the parent
  pid_t child = fork();
  if (child == 0) {
    // The inherited store, whose watchdog thread stayed in the parent.
    auto t0 = std::chrono::steady_clock::now();
    Value cv;
    Status s = slow->Get(":1:k", &cv);
    _exit(!s.ok() && MsSince(t0) < 400 ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "no deadline in a forked child";
}

int ThreadCount() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

TEST(MemcachedDeadline, OneWatchdogThreadForEveryStore) {
  // Django makes a cache object (a store) per thread and alias: the
  // watchdog is one thread for the process, not one per store.
  Memcached m;
  ASSERT_TRUE(m.up());
  std::vector<std::unique_ptr<Store>> stores;
  auto first = Open(m.location(), {{"POLL_TIMEOUT", "0.5"}});
  ASSERT_TRUE(first->Set(":1:k", "v", kEncStr, kNever).ok());  // the watchdog runs now
  int before = ThreadCount();
  for (int i = 0; i < 20; ++i) {
    stores.push_back(Open(m.location(), {{"POLL_TIMEOUT", "0.5"}}));
    Value v;
    ASSERT_TRUE(stores.back()->Get(":1:k", &v).ok());
  }
  EXPECT_EQ(ThreadCount(), before);
}

}  // namespace
}  // namespace regioncache
