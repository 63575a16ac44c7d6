// MemcachedStore: the Store of regioncache/memcached_store.h, derived from
// the core skeleton (core/store_base.h). What lives where in native/memcached:
//   mc_store.h/.cc   this class: options, pool, deadline watchdog, routing and
//                    server health, packing values, the cache calls, batches
//   mc_inspect.cc    inspection: listing (lru_crawler metadump + mg), stats
//                    and each server's health, purges, clear
//   mc_servers.h/.cc LOCATION parsing, the continuum that picks a key's server
//   mc_keys.h/.cc    key mapping and the key envelope, exptime
//   mc_text.h/.cc    TextConn, the text-protocol connection inspection speaks
//   mc_atomic.cc     Peek (value and expiry, no LRU bump) and CompareAndSwap
//                    over memcached's meta protocol (mg/ms/md with a CAS
//                    value), on a small pool of TextConns a server
//
// Connections: every server gets a libmemcached handle of its own (so the
// store's continuum, not libmemcached's, picks the server), and a thread
// takes a Conn -- one handle per server -- from a pool for the length of one
// call. Server health (consecutive failures, the time of the next retry) is
// shared by every Conn, so all threads stop waiting on a dead server together.
#pragma once

#include <libmemcached/memcached.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/store_base.h"
#include "memcached/mc_servers.h"
#include "regioncache/store.h"

namespace regioncache::mc {

class TextConn;

struct Config {
  bool tcp_nodelay = true;
  int64_t connect_timeout_ms = 1000;
  int64_t poll_timeout_ms = 1000;
  int64_t retry_timeout_ms = 2000;
  uint64_t failure_limit = 2;
  bool remove_failed = true;
  bool binary = false;
  uint64_t max_item_size = 1 << 20;
  uint64_t compress_min = 32 << 10;
  uint64_t compress_level = 1;
  std::string region_prefix;
  bool flush_all_on_clear = false;
};

Status ParseConfig(const StoreSpec& spec, Config* cfg);

struct Conn {
  std::vector<memcached_st*> h;                   // one per server
  std::unique_ptr<memcached_result_st[]> result;  // one per server, reused
  std::vector<const int*> fd;  // libmemcached's socket of each handle (see Deadline)
  size_t n = 0;
  const std::vector<ServerAddr>* servers = nullptr;  // the store's, for the watchdog's check
  int64_t tick_ms = 50;                               // how late the watchdog may look
  // The deadline of the call in progress on this Conn (ms, NowMs clock):
  // 0 none, kFiring while the watchdog shuts its sockets down.
  static constexpr int64_t kFiring = -1;
  std::atomic<int64_t> deadline_ms{0};
  std::atomic<int> target{-1};  // the call's server, or -1: every server
  std::atomic<bool> fired{false};
  ~Conn();
};

class MemcachedStore final : public StoreBase {
 public:
  MemcachedStore(const StoreSpec& spec, Config cfg, std::vector<ServerAddr> servers);
  ~MemcachedStore() override;
  Status Init();

  Status Get(std::string_view key, Value* out) override;
  Status Touch(std::string_view key, int64_t expires_ms) override;
  Status Delete(std::string_view key) override;
  Status Incr(std::string_view key, int64_t delta, int64_t* result) override;
  Status Clear() override;
  Status CompareAndSwap(std::string_view key, std::string_view expected, uint32_t expected_flags,
                        const WriteItem* with) override;
  Status GetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                 std::vector<bool>* found) override;
  Status SetMany(std::span<const WriteItem> items, std::vector<size_t>* failed) override;
  Status DeleteMany(std::span<const std::string_view> keys, uint64_t* deleted) override;

  // The value and its expiry (memcached's "t": whole seconds), through
  // "mg ... u": no LRU bump, no last-access or fetched mark. memcached still
  // counts it in its get_hits/get_misses (stats), as every mg.
  Status Peek(std::string_view key, Value* out) override;
  Status List(const ListOptions& opts, ListPage* page) override;
  Status GetStats(Stats* out) override;
  Status GetCounters(Stats* out) override;
  // The servers keep no per-region counts: this process's, scoped so.
  void Count(Event e, uint64_t n = 1) override { events_.Add(e, n); }
  Status PurgeExpired(uint64_t* removed) override;
  Status PurgeMatching(std::string_view glob, uint64_t* removed,
                       const Progress& progress = {}) override;

  std::string_view kind() const override { return "memcached"; }
  // GetStats (full: with each server's items, slabs and a key dump for this
  // region's entries) or GetCounters (one "stats" per server).
  Status CollectStats(Stats* out, bool full);
  bool MayBlock() const override { return true; }
  uint64_t MaxItemSize() const override { return cfg_.max_item_size; }

 private:
  struct Health {
    std::atomic<uint32_t> failures{0};
    std::atomic<int64_t> retry_at_ms{0};  // 0: healthy
    // It answered "mg" with ERROR (memcached before 1.6): Peek reads
    // through get, with no expiry, and CompareAndSwap says it cannot.
    std::atomic<bool> no_meta{false};
  };
  // Idle TextConns of one server for Peek and CompareAndSwap (mc_atomic.cc):
  // slots taken and filled with one atomic exchange each, no lock, so a
  // child forked while another thread used the pool finds each slot whole
  // (it then drops the parent's connections: TextConn::generation).
  static constexpr size_t kTextSlots = 8;
  struct TextPool {
    std::atomic<TextConn*> slot[kTextSlots] = {};
    ~TextPool();
  };
  // The entry "mg" found, as the server keeps it (packed).
  struct MetaItem {
    bool found = false;
    std::string data;
    uint32_t flags = 0;
    int64_t ttl_s = -1;  // -1: never expires
    uint64_t cas = 0;
  };
  // An entry as lru_crawler metadump shows it, already this region's.
  struct Dumped {
    std::string wire;
    int64_t expires_ms = 0;
    int64_t accessed_ms = 0;
    uint64_t size = 0;
  };

  // Pool.
  std::unique_ptr<Conn> Acquire();
  void Release(std::unique_ptr<Conn> c);
  class Lease;

  // Deadlines. libmemcached's POLL_TIMEOUT bounds each wait for the socket,
  // not a whole reply: a server sending a byte at a time holds a call for
  // ever. Each call arms its Conn with a deadline; one watchdog thread per
  // process (mc_store.cc) shuts the sockets of a call that overruns it
  // down, which ends the call at once with a read/write failure. Arm and
  // disarm are a few atomic operations and a clock read: no syscall, no
  // lock on the hot path.
  class Deadline;
  void Arm(Conn* c, int server, int64_t extra_ms = 0);
  bool Disarm(Conn* c);  // true if the watchdog fired for this call

  // Routing and health.
  bool Live(int s, int64_t* now) const;
  Status Route(std::string_view wire, int* server);
  // A key's wire form (WireKey) and server, for the calls on one key.
  struct Routed {
    std::string storage;  // the mapped key, when the key had to be mapped
    std::string_view wire;
    bool mapped = false;
    int server = -1;
  };
  Status RouteKey(std::string_view key, Routed* r);
  // For a batch: item i goes on its server's list in by_server; false, with
  // the first routing error kept in *first_error, when it has no server.
  bool RouteInto(std::string_view wire, size_t i, std::vector<std::vector<size_t>>* by_server,
                 Status* first_error);
  void MarkOk(int s);
  // One more consecutive failure of server s (after RETRY_TIMEOUT's
  // SERVER_FAILURE_LIMIT of them, routing skips it for RETRY_TIMEOUT).
  void CountFailure(int s);
  Status Failed(int s, memcached_st* h, memcached_return_t rc, bool fired = false);
  // Logs a server's failure inside a batch that still answered (so the
  // caller never sees it); nothing for OK.
  void LogSwallowed(const Status& st) const;
  // IOError: no Conn could be made (out of memory).
  Status NoConnection() const;
  static bool IsDown(memcached_return_t rc);

  // Values.
  Status Pack(std::string_view made, bool mapped, std::string_view data, uint32_t flags,
              std::string_view wire, std::string* buf, std::string* zbuf, std::string_view* out,
              uint32_t* out_flags) const;
  Status Unpack(std::string_view made, bool mapped, const char* data, size_t len, uint32_t flags,
                Value* out) const;
  Status Write(WriteMode mode, std::string_view key, std::string_view data, uint32_t flags,
               int64_t expires_ms) override;
  Status DeleteWire(const std::vector<std::string>& wire, uint64_t* sent);
  // Routes key and leases a Conn, then returns call(conn, server, wire key).
  template <class Call>
  Status OnKeyServer(std::string_view key, Call&& call);
  // One request on a key's server (Touch, Delete): send(handle, wire key)
  // returns libmemcached's answer; OK when done, NotFound when not found.
  template <class Send>
  Status KeyedCall(std::string_view key, Send&& send);

  // Meta protocol (mc_atomic.cc).
  class TextLease;
  std::unique_ptr<TextConn> TakeText(int s);  // nullptr: none idle
  void ReturnText(int s, std::unique_ptr<TextConn> tc);
  // A TextConn's failure on server s: counted against its health, and
  // Unavailable whatever it was (a garbled reply is a misbehaving server).
  Status TextFailed(int s, const Status& st);
  // "mg <wire> <flags>" on tc: *item filled (found or not); no_meta set
  // when the server does not know mg.
  Status MetaGet(TextConn* tc, int s, std::string_view wire, std::string_view flags,
                 MetaItem* item, bool* no_meta);

  // What a listing shows for a dumped entry (from its "mg" reply).
  struct Shown {
    std::string key;  // the made key (a mapped key's from its envelope)
    uint64_t size = 0;
    uint32_t flags = 0;
    bool gone = false;  // deleted or expired since the dump
  };

  // Inspection.
  Status Dump(int s, std::vector<Dumped>* out);
  bool InRegion(std::string_view wire) const;
  // One batch of "mg" requests for batch[0..n), written at once, then the
  // replies read in order: one round trip for the batch.
  Status DisplayKeys(class TextConn* tc, const Dumped* const* batch, size_t n,
                     std::vector<Shown>* out);

  Config cfg_;
  std::vector<ServerAddr> servers_;
  Continuum continuum_;
  std::vector<memcached_st*> templates_;  // configured, never connected; cloned per Conn
  std::unique_ptr<Health[]> health_;
  std::string sanitized_prefix_;  // region_prefix as it appears in mapped keys
  uint64_t value_limit_ = 0;      // largest value buffer a reply may make libmemcached grow

  std::unique_ptr<TextPool[]> text_pools_;  // one a server

  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::vector<Conn*> all_;  // every Conn made (owned by idle_ or a Lease), for the watchdog

  bool deadlines_ok_ = false;  // off when libmemcached's layout is not the one checked at Init
  int64_t tick_ms_ = 50;
  ProcessEvents events_;  // Count's: errors and stampede waits of this process
};

// The process's fork generation: a connection made in another (the parent,
// before a fork) is not this process's to use.
uint64_t ForkGeneration();

// Borrows a Conn from the pool for one call.
class MemcachedStore::Lease {
 public:
  explicit Lease(MemcachedStore* st) : st_(st), c_(st->Acquire()) {}
  ~Lease() {
    if (c_) st_->Release(std::move(c_));
  }
  Conn* operator->() { return c_.get(); }
  Conn* get() { return c_.get(); }
  bool ok() const { return c_ != nullptr; }

 private:
  MemcachedStore* st_;
  std::unique_ptr<Conn> c_;
};

// Arms a Conn's deadline for one call; Disarm on leaving (fired() tells
// whether the watchdog ended the call).
class MemcachedStore::Deadline {
 public:
  Deadline(MemcachedStore* st, Conn* c, int server, int64_t extra_ms = 0) : st_(st), c_(c) {
    st_->Arm(c_, server, extra_ms);
  }
  ~Deadline() { Done(); }
  // Whether the watchdog has fired (the call stays armed).
  bool Fired() const { return c_ ? c_->fired.load(std::memory_order_relaxed) : fired_; }
  // Disarms now; true if the watchdog fired.
  bool Done() {
    if (c_) {
      fired_ = st_->Disarm(c_);
      c_ = nullptr;
    }
    return fired_;
  }

 private:
  MemcachedStore* st_;
  Conn* c_;
  bool fired_ = false;
};

}  // namespace regioncache::mc
