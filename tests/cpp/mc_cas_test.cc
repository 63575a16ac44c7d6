// The memcached store's Peek (the value with its real expiry) and
// CompareAndSwap (memcached's meta protocol), against real memcached servers
// on free loopback ports, and against a scripted fake server for the replies
// a real one does not send.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "memcached/mc_keys.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/store.h"
#include "support/test_support.h"

namespace regioncache {
namespace {

using Memcached = testing::MemcachedServer;

std::unique_ptr<Store> Open(const std::string& location,
                            std::map<std::string, std::string> options = {}) {
  std::unique_ptr<Store> st;
  Status s = OpenStore({"mc", "memcached", location, std::move(options)}, &st);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return st;
}

// Milliseconds since it was made.
struct Stopwatch {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  int64_t ms() const {
    auto d = std::chrono::steady_clock::now() - t0;
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  }
};

// A blocking connection to 127.0.0.1:port whose reads give up after 2 s;
// -1 if refused.
int Dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a = testing::Loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) return fd;
  close(fd);
  return -1;
}

// One text-protocol exchange with a server on its own connection: sends
// `command`, returns the reply up to and including its first line ending in
// "\r\n" (plus `block` more bytes, for a value that follows).
std::string Ask(int port, const std::string& command, size_t block = 0) {
  int fd = Dial(port);
  if (fd < 0) return "(no connection)";
  send(fd, command.data(), command.size(), MSG_NOSIGNAL);
  std::string out;
  char c;
  size_t line_end = std::string::npos;
  while (recv(fd, &c, 1, 0) == 1) {
    out.push_back(c);
    if (line_end == std::string::npos && out.size() >= 2 &&
        out.compare(out.size() - 2, 2, "\r\n") == 0) {
      line_end = out.size();
      if (out.rfind("VA ", 0) != 0) break;  // no value follows
    }
    if (line_end != std::string::npos && out.size() >= line_end + block) break;
  }
  close(fd);
  return out;
}

// The server's figure `name` from "stats".
uint64_t ServerStat(int port, const std::string& name) {
  int fd = Dial(port);
  if (fd < 0) return ~0ull;
  send(fd, "stats\r\n", 7, MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  while (out.find("END\r\n") == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  std::string tag = "STAT " + name + " ";
  size_t at = out.find(tag);
  return at == std::string::npos ? ~0ull : std::stoull(out.substr(at + tag.size()));
}

int PortOf(const Memcached& m) { return m.port(); }

// ---- Peek --------------------------------------------------------------------

TEST(McPeek, GivesTheServersExpiryInWholeSeconds) {
  Memcached m;
  ASSERT_TRUE(m.up()) << m.error();
  auto st = Open(m.location());
  int64_t now = NowMs();
  ASSERT_TRUE(st->Set(":1:ttl", "v", kEncStr, now + 100'000).ok());
  ASSERT_TRUE(st->Set(":1:never", "w", kEncStr, kNever).ok());
  Value v;
  ASSERT_TRUE(st->Peek(":1:ttl", &v).ok());
  EXPECT_EQ(v.data, "v");
  EXPECT_EQ(v.flags, kEncStr);
  int64_t left = v.expires_ms - NowMs();
  EXPECT_GE(left, 98'900) << left;
  EXPECT_LE(left, 100'100) << left;
  ASSERT_TRUE(st->Peek(":1:never", &v).ok());
  EXPECT_EQ(v.data, "w");
  EXPECT_EQ(v.expires_ms, kNever);
  EXPECT_TRUE(st->Peek(":1:missing", &v).IsNotFound());
  // A Get does not know the expiry; Peek after a touch sees the new one.
  ASSERT_TRUE(st->Touch(":1:never", NowMs() + 40'000).ok());
  ASSERT_TRUE(st->Peek(":1:never", &v).ok());
  left = v.expires_ms - NowMs();
  EXPECT_GE(left, 38'900) << left;
  EXPECT_LE(left, 40'100) << left;
  // An expiry beyond 30 days is sent as an absolute time; t is still the
  // seconds left.
  int64_t far = NowMs() + 40LL * 86400 * 1000;
  ASSERT_TRUE(st->Set(":1:far", "f", kEncStr, far).ok());
  ASSERT_TRUE(st->Peek(":1:far", &v).ok());
  EXPECT_LE(std::llabs(v.expires_ms - far), 2'000) << v.expires_ms - far;
}

TEST(McPeek, NeitherMarksTheItemFetchedNorBumpsItButMemcachedCountsTheGet) {
  Memcached m;
  ASSERT_TRUE(m.up()) << m.error();
  auto st = Open(m.location());
  ASSERT_TRUE(st->Set(":1:p", "v", kEncStr, kNever).ok());
  Value v;
  uint64_t hits0 = ServerStat(PortOf(m), "get_hits");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(st->Peek(":1:p", &v).ok());
  // "h": has the item been hit before (asked with u, so the asking does
  // not count): five Peeks left it unfetched.
  EXPECT_EQ(Ask(PortOf(m), "mg :1:p h u\r\n"), "HD h0\r\n");
  // memcached counts every mg in its server-wide get_hits, u or not: the
  // protocol has no read that leaves that counter alone (README).
  EXPECT_EQ(ServerStat(PortOf(m), "get_hits"), hits0 + 6);
  ASSERT_TRUE(st->Get(":1:p", &v).ok());
  EXPECT_EQ(Ask(PortOf(m), "mg :1:p h u\r\n"), "HD h1\r\n");
}

TEST(McPeek, MappedCompressedAndIntegerValuesReadAsGetReadsThem) {
  Memcached m;
  ASSERT_TRUE(m.up()) << m.error();
  auto st = Open(m.location(), {{"COMPRESS_MIN_SIZE", "1KB"}});
  std::string long_key = ":1:" + std::string(300, 'k') + " with spaces";
  std::string big(64 << 10, 'z');
  ASSERT_TRUE(st->Set(long_key, big, kEncStr, NowMs() + 60'000).ok());
  ASSERT_TRUE(st->Set(":1:n", "41", kEncInt, kNever).ok());
  int64_t r = 0;
  ASSERT_TRUE(st->Incr(":1:n", -39, &r).ok());  // memcached pads "2" to "2 "
  Value v;
  ASSERT_TRUE(st->Peek(long_key, &v).ok());
  EXPECT_TRUE(v.data == big) << v.data.size() << " bytes";
  EXPECT_EQ(v.flags, kEncStr);
  EXPECT_GT(v.expires_ms, NowMs() + 58'000);
  ASSERT_TRUE(st->Peek(":1:n", &v).ok());
  EXPECT_EQ(v.data, "2");
  EXPECT_EQ(v.flags, kEncInt);
  // A safe key that only looks like the mapping of another made key is not
  // that key's entry.
  std::string wire;
  ASSERT_TRUE(mc::MakeWireKey(long_key, &wire));
  std::string other = ":1:" + std::string(300, 'k') + " other";
  EXPECT_TRUE(st->Peek(other, &v).IsNotFound());
}

// ---- CompareAndSwap ----------------------------------------------------------

TEST(McCas, ReplacesOnlyTheExpectedValueAndDeletesInTheDeleteForm) {
  Memcached m;
  ASSERT_TRUE(m.up()) << m.error();
  auto st = Open(m.location());
  ASSERT_TRUE(st->Set(":1:k", "one", kEncStr, kNever).ok());
  WriteItem two{":1:k", "two", kEncBytes, NowMs() + 50'000};
  // A different value, or the same bytes under other flags: not replaced.
  EXPECT_TRUE(st->CompareAndSwap(":1:k", "uno", kEncStr, &two).IsNotStored());
  EXPECT_TRUE(st->CompareAndSwap(":1:k", "one", kEncBytes, &two).IsNotStored());
  Value v;
  ASSERT_TRUE(st->Get(":1:k", &v).ok());
  EXPECT_EQ(v.data, "one");
  // The expected one: replaced, with the replacement's flags and expiry.
  ASSERT_TRUE(st->CompareAndSwap(":1:k", "one", kEncStr, &two).ok());
  ASSERT_TRUE(st->Peek(":1:k", &v).ok());
  EXPECT_EQ(v.data, "two");
  EXPECT_EQ(v.flags, kEncBytes);
  EXPECT_GT(v.expires_ms, NowMs() + 48'000);
  EXPECT_LT(v.expires_ms, NowMs() + 51'100);
  // Again with the old value: no longer there.
  EXPECT_TRUE(st->CompareAndSwap(":1:k", "one", kEncStr, &two).IsNotStored());
  // Missing key: NotFound, and nothing is created.
  EXPECT_TRUE(st->CompareAndSwap(":1:none", "x", kEncStr, &two).IsNotFound());
  EXPECT_TRUE(st->Get(":1:none", &v).IsNotFound());
  // The delete form.
  EXPECT_TRUE(st->CompareAndSwap(":1:k", "one", kEncStr, nullptr).IsNotStored());
  ASSERT_TRUE(st->CompareAndSwap(":1:k", "two", kEncBytes, nullptr).ok());
  EXPECT_TRUE(st->Get(":1:k", &v).IsNotFound());
  EXPECT_TRUE(st->CompareAndSwap(":1:k", "two", kEncBytes, nullptr).IsNotFound());
  // A replacement already expired leaves no live entry.
  ASSERT_TRUE(st->Set(":1:k", "one", kEncStr, kNever).ok());
  WriteItem gone{":1:k", "x", kEncStr, NowMs() - 1000};
  ASSERT_TRUE(st->CompareAndSwap(":1:k", "one", kEncStr, &gone).ok());
  EXPECT_TRUE(st->Get(":1:k", &v).IsNotFound());
}

TEST(McCas, MappedKeyCompressedValueAndIntegers) {
  Memcached m;
  ASSERT_TRUE(m.up()) << m.error();
  auto st = Open(m.location(), {{"COMPRESS_MIN_SIZE", "1KB"}});
  std::string key = ":1:" + std::string(300, 'm') + "\x01 unsafe";
  std::string a(200 << 10, 'a'), b(200 << 10, 'b');
  ASSERT_TRUE(st->Set(key, a, kEncStr, kNever).ok());
  WriteItem with{key, b, kEncStr, kNever};
  EXPECT_TRUE(st->CompareAndSwap(key, b, kEncStr, &with).IsNotStored());
  ASSERT_TRUE(st->CompareAndSwap(key, a, kEncStr, &with).ok());
  Value v;
  ASSERT_TRUE(st->Get(key, &v).ok());
  EXPECT_TRUE(v.data == b) << v.data.size() << " bytes";
  // Stored compressed, as a write stores it: far smaller than the value.
  std::string wire;
  ASSERT_TRUE(mc::MakeWireKey(key, &wire));
  std::string meta = Ask(PortOf(m), "mg " + wire + " s f\r\n");
  ASSERT_EQ(meta.rfind("HD s", 0), 0u) << meta;
  EXPECT_LT(std::stoull(meta.substr(4)), 4096u) << meta;
  ASSERT_TRUE(st->CompareAndSwap(key, b, kEncStr, nullptr).ok());
  EXPECT_TRUE(st->Get(key, &v).IsNotFound());
  // An integer stays plain: incr works on what a swap wrote.
  ASSERT_TRUE(st->Set(":1:n", "5", kEncInt, kNever).ok());
  WriteItem six{":1:n", "6", kEncInt, kNever};
  ASSERT_TRUE(st->CompareAndSwap(":1:n", "5", kEncInt, &six).ok());
  int64_t r = 0;
  ASSERT_TRUE(st->Incr(":1:n", 10, &r).ok());
  EXPECT_EQ(r, 16);
  // Over MAX_ITEM_SIZE: refused before anything is sent, the old value kept.
  std::string huge(2 << 20, '\0');
  std::mt19937 rng(7);
  for (char& c : huge) c = static_cast<char>(rng());
  WriteItem too{":1:n", huge, kEncBytes, kNever};
  EXPECT_TRUE(st->CompareAndSwap(":1:n", "16", kEncInt, &too).IsTooLarge());
  ASSERT_TRUE(st->Get(":1:n", &v).ok());
  EXPECT_TRUE(v.data == "16") << v.data.size() << " bytes";
}

TEST(McCas, RegionsWithTheirOwnPrefixDoNotTouchEachOthersKeys) {
  Memcached m;
  ASSERT_TRUE(m.up()) << m.error();
  auto a = Open(m.location(), {{"REGION_PREFIX", "a:"}});
  auto b = Open(m.location(), {{"REGION_PREFIX", "b:"}});
  ASSERT_TRUE(a->Set("a:1:lock", "token-a", kEncStr, kNever).ok());
  ASSERT_TRUE(b->Set("b:1:lock", "token-b", kEncStr, kNever).ok());
  WriteItem w{"", "stolen", kEncStr, kNever};
  EXPECT_TRUE(a->CompareAndSwap("a:1:lock", "token-b", kEncStr, &w).IsNotStored());
  EXPECT_TRUE(a->CompareAndSwap("a:1:other", "token-b", kEncStr, &w).IsNotFound());
  ASSERT_TRUE(b->CompareAndSwap("b:1:lock", "token-b", kEncStr, nullptr).ok());
  Value v;
  ASSERT_TRUE(a->Peek("a:1:lock", &v).ok());
  EXPECT_EQ(v.data, "token-a");
  EXPECT_TRUE(b->Peek("b:1:lock", &v).IsNotFound());
}

TEST(McCas, TwoServersEachKeyOnItsOwn) {
  Memcached m1, m2;
  ASSERT_TRUE(m1.up() && m2.up()) << m1.error() << m2.error();
  auto st = Open(m1.location() + ";" + m2.location());
  int on1 = 0, on2 = 0;
  for (int i = 0; i < 40; ++i) {
    std::string k = ":1:spread" + std::to_string(i);
    ASSERT_TRUE(st->Set(k, "old", kEncStr, kNever).ok());
    std::string fresh = "new" + std::to_string(i);
    WriteItem w{k, fresh, kEncStr, kNever};
    ASSERT_TRUE(st->CompareAndSwap(k, "old", kEncStr, &w).ok()) << k;
    // Exactly one server holds the key, and there it was swapped: the swap
    // went where the set went.
    std::string r1 = Ask(PortOf(m1), "mg " + k + " v\r\n", w.data.size() + 2);
    std::string r2 = Ask(PortOf(m2), "mg " + k + " v\r\n", w.data.size() + 2);
    auto holds = [&](const std::string& r) {
      return r.rfind("VA ", 0) == 0 && r.find("\r\n" + std::string(w.data) + "\r\n") != std::string::npos;
    };
    EXPECT_TRUE((holds(r1) && r2 == "EN\r\n") || (holds(r2) && r1 == "EN\r\n")) << r1 << r2;
    on1 += holds(r1);
    on2 += holds(r2);
    Value v;
    ASSERT_TRUE(st->Peek(k, &v).ok());
    EXPECT_EQ(v.data, w.data);
  }
  EXPECT_GT(on1, 0);
  EXPECT_GT(on2, 0);
}

TEST(McCas, ConcurrentIncrementsThroughSwapLoseNothingAcrossStores) {
  Memcached m;
  ASSERT_TRUE(m.up()) << m.error();
  // Two store objects: two "hosts" sharing one server.
  auto s1 = Open(m.location());
  auto s2 = Open(m.location());
  ASSERT_TRUE(s1->Set(":1:count", "0", kEncInt, kNever).ok());
  constexpr int kThreads = 6, kEach = 150;
  std::atomic<int> conflicts{0}, errors{0};
  std::vector<std::thread> th;
  for (int t = 0; t < kThreads; ++t) {
    th.emplace_back([&, t] {
      Store* st = (t % 2 ? s1 : s2).get();
      for (int i = 0; i < kEach; ++i) {
        for (;;) {
          Value v;
          if (!st->Peek(":1:count", &v).ok()) {
            ++errors;
            return;
          }
          std::string next = std::to_string(std::stoll(v.data) + 1);
          WriteItem w{":1:count", next, kEncInt, kNever};
          Status s = st->CompareAndSwap(":1:count", v.data, kEncInt, &w);
          if (s.ok()) break;
          if (!s.IsNotStored()) {
            ++errors;
            return;
          }
          ++conflicts;
        }
      }
    });
  }
  for (auto& t : th) t.join();
  EXPECT_EQ(errors.load(), 0);
  Value v;
  ASSERT_TRUE(s1->Get(":1:count", &v).ok());
  EXPECT_EQ(v.data, std::to_string(kThreads * kEach)) << conflicts.load() << " conflicts";
}

TEST(McCas, ConnectionsArePooledAndNotSharedWithAForkedChild) {
  Memcached m;
  ASSERT_TRUE(m.up()) << m.error();
  auto st = Open(m.location());
  ASSERT_TRUE(st->Set(":1:parent", "P", kEncStr, kNever).ok());
  ASSERT_TRUE(st->Set(":1:child", "C", kEncStr, kNever).ok());
  Value v;
  ASSERT_TRUE(st->Peek(":1:parent", &v).ok());
  uint64_t conns0 = ServerStat(PortOf(m), "total_connections");
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(st->Peek(":1:parent", &v).ok());
    WriteItem w{":1:parent", "P", kEncStr, kNever};
    ASSERT_TRUE(st->CompareAndSwap(":1:parent", "P", kEncStr, &w).ok());
  }
  // One call at a time: the pooled connection served all 600 (the stats
  // call itself is one connection).
  EXPECT_LE(ServerStat(PortOf(m), "total_connections"), conns0 + 2);
  // A forked child must not use the parent's pooled socket: both read their
  // own key at once, and every reply is the right one. (A plain fork from
  // this thread: forking while another thread allocates can leave the
  // child's allocator locked, under ASan too.)
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Value cv;
    int bad = 0;
    for (int i = 0; i < 500; ++i) bad += !st->Peek(":1:child", &cv).ok() || cv.data != "C";
    _exit(bad == 0 ? 0 : 1);
  }
  int wrong = 0;
  for (int i = 0; i < 500; ++i) wrong += !st->Peek(":1:parent", &v).ok() || v.data != "P";
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_EQ(wrong, 0);
}

// ---- failures ----------------------------------------------------------------

TEST(McCas, KilledOrStoppedServerIsUnavailableWithinTheTimeouts) {
  auto m = std::make_unique<Memcached>();
  ASSERT_TRUE(m->up()) << m->error();
  std::string loc = m->location();
  auto st = Open(loc, {{"CONNECT_TIMEOUT", "0.2"}, {"POLL_TIMEOUT", "0.2"}, {"RETRY_TIMEOUT", "0"}});
  ASSERT_TRUE(st->Set(":1:k", "v", kEncStr, kNever).ok());
  Value v;
  ASSERT_TRUE(st->Peek(":1:k", &v).ok());  // a pooled connection now
  // Stopped (SIGSTOP): the reply never comes; POLL_TIMEOUT ends the call.
  m->Stop();
  Stopwatch t0;
  Status s = st->Peek(":1:k", &v);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("region 'mc'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(loc), std::string::npos) << s.message();
  WriteItem w{":1:k", "w", kEncStr, kNever};
  s = st->CompareAndSwap(":1:k", "v", kEncStr, &w);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_LT(t0.ms(), 2000);
  m->Continue();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past RETRY_TIMEOUT's 1 ms
  // Back: answered again (the timed-out connections were dropped).
  s = st->Peek(":1:k", &v);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(st->CompareAndSwap(":1:k", "v", kEncStr, &w).ok());
  // Killed with a pooled connection: the pool notices the closed socket, the
  // reconnect is refused.
  kill(m->pid(), SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  t0 = Stopwatch();
  s = st->Peek(":1:k", &v);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find(loc), std::string::npos) << s.message();
  s = st->CompareAndSwap(":1:k", "w", kEncStr, nullptr);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_LT(t0.ms(), 2000);
}

TEST(McCas, FailuresCountAgainstTheServersHealth) {
  // Nothing listens: after SERVER_FAILURE_LIMIT failures, calls fail at
  // once without a connect (the message says every server has failed).
  auto st = Open("127.0.0.1:" + std::to_string(testing::FreePort()),
                 {{"CONNECT_TIMEOUT", "0.2"}, {"SERVER_FAILURE_LIMIT", "2"}, {"RETRY_TIMEOUT", "30"}});
  Value v;
  EXPECT_TRUE(st->Peek(":1:k", &v).IsUnavailable());
  EXPECT_TRUE(st->CompareAndSwap(":1:k", "a", kEncStr, nullptr).IsUnavailable());
  Status s = st->Peek(":1:k", &v);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("every memcached server has failed"), std::string::npos)
      << s.message();
}

// A scripted fake server on 127.0.0.1: for each request line it reads (and
// the data block of an "ms"), answer(line) gives the reply, sent whole or a
// byte every `gap`.
class ScriptedServer {
 public:
  using Answer = std::function<std::string(const std::string& line)>;
  ScriptedServer(Answer answer, std::chrono::milliseconds gap = std::chrono::milliseconds(0))
      : port_(testing::FreePort()),
        location_("127.0.0.1:" + std::to_string(port_)),
        answer_(std::move(answer)),
        gap_(gap) {
    lfd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a = testing::Loopback(port_);
    bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(lfd_, 16);
    // A thread a connection: the store's text and libmemcached
    // connections are served at once.
    th_ = std::thread([this] {
      std::vector<std::thread> conns;
      for (;;) {
        int fd = accept(lfd_, nullptr, nullptr);
        if (fd < 0) break;
        timeval tv{0, 50'000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        conns.emplace_back([this, fd] {
          Serve(fd);
          close(fd);
        });
      }
      for (auto& t : conns) t.join();
      close(lfd_);
    });
  }
  // Stops accepting (the thread then closes the socket) and waits for the
  // connections' threads.
  ~ScriptedServer() {
    stop_ = true;
    shutdown(lfd_, SHUT_RDWR);
    th_.join();
  }
  const std::string& location() const { return location_; }

 private:
  void Serve(int fd) {
    std::string in;
    char buf[4096];
    while (!stop_) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n == 0) return;
      if (n < 0) continue;  // the receive timeout: look at stop_
      in.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = in.find("\r\n")) != std::string::npos) {
        std::string line = in.substr(0, nl);
        size_t used = nl + 2;
        if (line.rfind("ms ", 0) == 0) {  // its data block follows
          size_t len = std::stoul(line.substr(line.find(' ', 3) + 1));
          if (in.size() < used + len + 2) break;
          used += len + 2;
        }
        in.erase(0, used);
        std::string reply = answer_(line);
        if (gap_.count() == 0) {
          send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
          continue;
        }
        for (char c : reply) {
          if (stop_ || send(fd, &c, 1, MSG_NOSIGNAL) != 1) return;
          std::this_thread::sleep_for(gap_);
        }
      }
    }
  }
  int port_;
  std::string location_;
  int lfd_;
  Answer answer_;
  std::chrono::milliseconds gap_;
  std::atomic<bool> stop_{false};
  std::thread th_;
};

TEST(McCas, GarbledRepliesAreCleanErrorsNamingRegionAndServer) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"binary garbage", std::string("\xff\xfe\x00HELLO\r\n", 9)},
      {"a length that is not a number", "VA 3x f0 c1\r\nabc\r\n"},
      {"a claim of 8 GB", "VA 8589934592 f0 c1\r\n"},
      {"a flags token that is not a number", "VA 3 f-1 c1\r\nabc\r\n"},
      {"a missing CAS value", "VA 3 f0\r\nabc\r\n"},
      {"a value block without its end", "VA 3 f0 c1\r\nabcdef\r\n"},
      {"a line with no end", std::string(70 << 10, 'x')},
  };
  for (const auto& [what, reply] : cases) {
    ScriptedServer fake([&](const std::string&) { return reply; });
    auto st = Open(fake.location(), {{"POLL_TIMEOUT", "0.3"}});
    Stopwatch t0;
    Status s = st->CompareAndSwap(":1:k", "abc", kEncStr, nullptr);
    EXPECT_TRUE(s.IsUnavailable()) << what << ": " << s.ToString();
    EXPECT_NE(s.message().find("region 'mc'"), std::string::npos) << what << ": " << s.message();
    EXPECT_NE(s.message().find(fake.location()), std::string::npos) << what << ": " << s.message();
    for (unsigned char c : s.message()) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << what;
    EXPECT_LT(t0.ms(), 2000) << what;
  }
}

TEST(McCas, RefusalsOfTheWriteAndATrickleEndCleanly) {
  // mg answers well; ms is refused by the server.
  auto good_mg = [](const std::string& line, const std::string& on_write) {
    if (line.rfind("mg ", 0) == 0) return std::string("VA 3 f0 c7\r\nabc\r\n");
    return on_write;
  };
  {
    ScriptedServer fake([&](const std::string& l) {
      return good_mg(l, "SERVER_ERROR out of memory storing object\r\n");
    });
    auto st = Open(fake.location());
    WriteItem w{":1:k", "xyz", 0, kNever};
    Status s = st->CompareAndSwap(":1:k", "abc", 0, &w);
    EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
    EXPECT_NE(s.message().find("out of memory storing object"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(fake.location()), std::string::npos) << s.message();
  }
  {
    ScriptedServer fake([&](const std::string& l) {
      return good_mg(l, "SERVER_ERROR object too large for cache\r\n");
    });
    auto st = Open(fake.location());
    WriteItem w{":1:k", "xyz", 0, kNever};
    EXPECT_TRUE(st->CompareAndSwap(":1:k", "abc", 0, &w).IsTooLarge());
  }
  {
    // The replies it sent: EX (someone wrote in between) and NF (gone).
    std::string next = "EX\r\n";
    ScriptedServer fake([&](const std::string& l) { return good_mg(l, next); });
    auto st = Open(fake.location());
    EXPECT_TRUE(st->CompareAndSwap(":1:k", "abc", 0, nullptr).IsNotStored());
    next = "NF\r\n";
    EXPECT_TRUE(st->CompareAndSwap(":1:k", "abc", 0, nullptr).IsNotFound());
  }
  {
    // A correct reply a byte every 30 ms: never a 300 ms silence, but the
    // whole reply is late.
    ScriptedServer fake([](const std::string&) { return std::string("VA 3 f0 t-1\r\nabc\r\n"); },
                        std::chrono::milliseconds(30));
    auto st = Open(fake.location(), {{"POLL_TIMEOUT", "0.3"}});
    Stopwatch t0;
    Value v;
    Status s = st->Peek(":1:k", &v);
    EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
    EXPECT_NE(s.message().find("within 300 ms"), std::string::npos) << s.message();
    EXPECT_LT(t0.ms(), 1000);
  }
}

TEST(McCas, AServerWithoutTheMetaProtocol) {
  // memcached before 1.6 answers mg with ERROR: Peek reads through get (no
  // expiry), CompareAndSwap says it cannot.
  ScriptedServer fake([](const std::string& l) {
    if (l.rfind("get ", 0) == 0) return std::string("VALUE :1:k 0 3\r\nold\r\nEND\r\n");
    return std::string("ERROR\r\n");
  });
  auto st = Open(fake.location());
  Value v;
  ASSERT_TRUE(st->Peek(":1:k", &v).ok());
  EXPECT_EQ(v.data, "old");
  EXPECT_EQ(v.expires_ms, kNever);
  Status s = st->CompareAndSwap(":1:k", "old", 0, nullptr);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("meta protocol"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace regioncache
