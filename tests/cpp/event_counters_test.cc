// Store::Count (errors, stampede waits) and Store::GetCounters, what the
// metrics scrape reads: on shared memory and files the counts of every
// process add up in the region (forked children, each with a store of its
// own, read back from the parent's); a read-only shm mapping counts in its
// own process; memcached counts per process, scoped so, and its
// GetCounters sends no key dump (the server's lru_crawler_starts).
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "regioncache/codec.h"
#include "regioncache/store.h"
#include "support/test_support.h"

namespace regioncache {
namespace {

using Event = Store::Event;

std::unique_ptr<Store> Open(const StoreSpec& spec) {
  std::unique_ptr<Store> s;
  Status st = OpenStore(spec, &s);
  if (!st.ok()) ADD_FAILURE() << st.ToString();
  return s;
}

class SharedCounters : public ::testing::TestWithParam<const char*> {
 protected:
  StoreSpec Spec() const {
    std::string kind = GetParam();
    return {"events", kind, kind == "shm" ? shm_.name() : dir_.path() + "/region",
            kind == "shm" ? std::map<std::string, std::string>{{"SIZE", "4MB"}, {"MAX_ITEM_SIZE", "64K"}}
                          : std::map<std::string, std::string>{}};
  }
  testing::ScratchShmRegion shm_{"gtest-event-counters"};
  testing::TempDir dir_{"regioncache-event-counters"};
};

TEST_P(SharedCounters, EveryProcessCountsIntoTheRegion) {
  auto parent = Open(Spec());
  ASSERT_TRUE(parent);
  Stats st;
  ASSERT_TRUE(parent->GetCounters(&st).ok());
  EXPECT_EQ(st.errors, 0u);
  EXPECT_EQ(st.stampede_waits, 0u);
  EXPECT_EQ(st.events_scope, Scope::kRegion);
  EXPECT_EQ(st.counters_scope, Scope::kRegion);
  // Child i counts i+1 errors and 2*i stampede waits, one at a time, and
  // sets and reads a key of its own (the counters beside them still count).
  std::string failed = testing::RunInChildrenAtOnce(4, [&](int i) {
    auto s = Open(Spec());
    if (!s) return 2;
    for (int n = 0; n <= i; ++n) s->Count(Event::kError);
    for (int n = 0; n < 2 * i; ++n) s->Count(Event::kStampedeWait);
    std::string key = "k" + std::to_string(i);
    Value v;
    if (!s->Set(key, "v", kEncStr, kNever).ok() || !s->Get(key, &v).ok()) return 3;
    return 0;
  });
  ASSERT_EQ(failed, "");
  parent->Count(Event::kStampedeWait, 5);
  ASSERT_TRUE(parent->GetCounters(&st).ok());
  EXPECT_EQ(st.errors, 1u + 2 + 3 + 4);
  EXPECT_EQ(st.stampede_waits, 0u + 2 + 4 + 6 + 5);
  EXPECT_EQ(st.sets, 4u);
  EXPECT_EQ(st.hits, 4u);
  EXPECT_EQ(st.entries, 4u);
  // GetStats says the same.
  Stats full;
  ASSERT_TRUE(parent->GetStats(&full).ok());
  EXPECT_EQ(full.errors, st.errors);
  EXPECT_EQ(full.stampede_waits, st.stampede_waits);
  // And a store opened afterwards reads them from the region.
  auto later = Open(Spec());
  ASSERT_TRUE(later);
  ASSERT_TRUE(later->GetCounters(&st).ok());
  EXPECT_EQ(st.errors, 10u);
  EXPECT_EQ(st.stampede_waits, 17u);
}

INSTANTIATE_TEST_SUITE_P(Stores, SharedCounters, ::testing::Values("shm", "file"));

TEST(ShmEventCounters, ReadOnlyMappingCountsInItsOwnProcess) {
  testing::ScratchShmRegion region("gtest-event-ro");
  StoreSpec spec{"events", "shm", region.name(), {{"SIZE", "4MB"}, {"MAX_ITEM_SIZE", "64K"}}};
  auto writer = Open(spec);
  ASSERT_TRUE(writer);
  writer->Count(Event::kError, 2);
  spec.options["READ_ONLY"] = "true";
  spec.options["CREATE"] = "false";
  auto reader = Open(spec);
  ASSERT_TRUE(reader);
  reader->Count(Event::kError, 3);  // must not write into the read-only mapping
  Stats st;
  ASSERT_TRUE(reader->GetCounters(&st).ok());
  EXPECT_EQ(st.errors, 5u);  // the region's 2, and its own 3
  ASSERT_TRUE(writer->GetCounters(&st).ok());
  EXPECT_EQ(st.errors, 2u);
}

// The value of one "STAT name value" line of the server's own stats.
uint64_t ServerStat(int port, const std::string& name) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = testing::Loopback(port);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) close(fd);
    ADD_FAILURE() << "cannot connect to memcached on port " << port;
    return 0;
  }
  std::string reply;
  if (write(fd, "stats\r\n", 7) != 7) ADD_FAILURE() << "cannot send stats";
  char buf[4096];
  while (reply.size() < 5 || reply.compare(reply.size() - 5, 5, "END\r\n") != 0) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  std::string want = "STAT " + name + " ";
  size_t at = reply.find(want);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no " << name << " in stats";
    return 0;
  }
  return std::stoull(reply.substr(at + want.size()));
}

TEST(MemcachedEventCounters, PerProcessAndNoKeyDumpForCounters) {
  testing::MemcachedServer server;
  ASSERT_TRUE(server.up()) << server.error();
  StoreSpec spec{"events", "memcached", server.location(), {}};
  auto a = Open(spec);
  auto b = Open(spec);
  ASSERT_TRUE(a && b);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(a->Set("k" + std::to_string(i), "v", kEncStr, kNever).ok());
  a->Count(Event::kError, 2);
  a->Count(Event::kStampedeWait);
  uint64_t crawls = ServerStat(server.port(), "lru_crawler_starts");
  Stats st;
  ASSERT_TRUE(a->GetCounters(&st).ok());
  EXPECT_EQ(ServerStat(server.port(), "lru_crawler_starts"), crawls);  // no metadump
  EXPECT_EQ(st.errors, 2u);
  EXPECT_EQ(st.stampede_waits, 1u);
  EXPECT_EQ(st.events_scope, Scope::kProcess);
  EXPECT_EQ(st.counters_scope, Scope::kServers);
  EXPECT_EQ(st.contents_scope, Scope::kServers);  // curr_items: every region on the server
  EXPECT_EQ(st.entries, 10u);
  EXPECT_EQ(st.sets, 10u);
  ASSERT_EQ(st.servers.size(), 1u);
  EXPECT_TRUE(st.servers[0].up);
  ASSERT_TRUE(b->GetCounters(&st).ok());  // another store object: its own events
  EXPECT_EQ(st.errors, 0u);
  // The full stats dump the keys, and count this region's entries themselves.
  ASSERT_TRUE(a->GetStats(&st).ok());
  EXPECT_GT(ServerStat(server.port(), "lru_crawler_starts"), crawls);
  EXPECT_EQ(st.contents_scope, Scope::kRegion);
  EXPECT_EQ(st.entries, 10u);
  EXPECT_EQ(st.errors, 2u);
}

}  // namespace
}  // namespace regioncache
