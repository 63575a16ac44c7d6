// The memcached cache calls: options, the connection pool and its deadline
// watchdog, routing and server health, packing values (compression, the key
// envelope), and the contract (get, write, touch, delete, incr, batches).
// Inspection lives in mc_inspect.cc.
#include "memcached/mc_store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "memcached/mc_keys.h"
#include "memcached/mc_text.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/log.h"
#include "regioncache/memcached_store.h"
#include "regioncache/options.h"
#include "core/compress.h"

namespace regioncache {

namespace mc {

namespace {

// The first fields of libmemcached's memcached_instance_st (1.0.x and 1.1.x,
// src/libmemcached/instance.hpp), which is opaque in the public headers:
// there is no call that gives a handle's socket. Init checks the layout
// against what the public calls say (the port, no socket before the first
// call) and turns the deadline watchdog off if it does not match.
struct InstanceHead {
  struct {
    bool is_allocated, is_initialized, is_shutting_down, is_dead, ready;
  } options;
  short events, revents;
  uint32_t cursor_active;
  in_port_t port;
  memcached_socket_t fd;
};

const int* FdOf(memcached_st* h) {
  const memcached_instance_st* inst = memcached_server_instance_by_position(h, 0);
  return inst ? &reinterpret_cast<const InstanceHead*>(inst)->fd : nullptr;
}

// Bumped in a forked child: the parent's watchdog thread is not there.
std::atomic<uint64_t> g_fork_generation{1};
std::once_flag g_atfork_once;
void OnForkChild() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

// libmemcached grows a result's buffer to the length a VALUE header claims
// before reading the value. Refusing sizes over MAX_ITEM_SIZE ends the read
// of a header claiming 2 GB at once (MEMCACHED_MEMORY_ALLOCATION_FAILURE)
// instead of allocating and then reading it.
thread_local size_t t_refused = 0;

void* LimitedMalloc(const memcached_st*, const size_t size, void*) { return std::malloc(size); }
void LimitedFree(const memcached_st*, void* mem, void*) { std::free(mem); }
void* LimitedCalloc(const memcached_st*, size_t n, const size_t size, void*) {
  return std::calloc(n, size);
}
void* LimitedRealloc(const memcached_st*, void* mem, const size_t size, void* ctx) {
  if (size > *static_cast<const uint64_t*>(ctx)) {
    t_refused = size;
    return nullptr;
  }
  return std::realloc(mem, size);
}

// memcached_fetch_result ends with NOTFOUND/END even when the reply was
// garbage or claimed too much (the error is only recorded on the handle):
// the handle's last error tells.
memcached_return_t FetchEnd(memcached_st* h, memcached_return_t rc) {
  if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_SUCCESS) return rc;
  memcached_return_t last = memcached_last_error(h);
  if (memcached_failed(last) && last != MEMCACHED_NOTFOUND && last != MEMCACHED_END) return last;
  return rc;
}

bool PeerIs(int fd, const ServerAddr& a) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&ss);
    return a.unix_socket && strncmp(un->sun_path, a.host.c_str(), sizeof(un->sun_path)) == 0;
  }
  if (ss.ss_family == AF_INET)
    return !a.unix_socket && ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port) == a.port;
  if (ss.ss_family == AF_INET6)
    return !a.unix_socket && ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port) == a.port;
  return false;
}

// The process's one watchdog thread: it looks at every registered Conn of
// every memcached store each tick (the smallest of the stores' ticks,
// POLL_TIMEOUT / 8 between 2 and 50 ms) while calls run, and sleeps on a
// condition variable after a second without any (a call arming a deadline
// wakes it). Django makes a cache object per thread, so one thread per
// store would mean one per request thread and alias.
class Watchdog {
 public:
  static Watchdog& Instance() {
    static Watchdog* w = new Watchdog();  // never destroyed: its thread may outlive exit's destructors
    return *w;
  }

  // Starts the thread in this process if it is not running here (the first
  // call, or the first in a forked child: the parent's thread is not there,
  // and its lock may have been copied held).
  void EnsureRunning() {
    uint64_t gen = g_fork_generation.load(std::memory_order_relaxed);
    if (generation_.load(std::memory_order_acquire) == gen) return;
    bool expected = false;
    while (!starting_.compare_exchange_weak(expected, true, std::memory_order_acquire)) {
      expected = false;
      std::this_thread::yield();
    }
    if (generation_.load(std::memory_order_acquire) != gen) {
      if (generation_.load(std::memory_order_relaxed) != 0) {
        new (&mu_) std::mutex();
        new (&cv_) std::condition_variable();
      }
      wake_ = false;
      sleeping_.store(false);
      std::thread([this] { Loop(); }).detach();
      generation_.store(gen, std::memory_order_release);
    }
    starting_.store(false, std::memory_order_release);
  }

  void Register(Conn* c) {
    EnsureRunning();
    std::lock_guard<std::mutex> l(mu_);
    conns_.push_back(c);
  }

  void Unregister(const std::vector<Conn*>& gone) {
    if (gone.empty()) return;
    EnsureRunning();
    std::lock_guard<std::mutex> l(mu_);  // not in a scan: the Conns may be freed after this
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                                [&](Conn* c) {
                                  return std::find(gone.begin(), gone.end(), c) != gone.end();
                                }),
                 conns_.end());
  }

  // After a Conn's deadline was stored (seq_cst): wake the thread if it
  // sleeps. (It publishes that it sleeps, then looks for armed Conns; a
  // call publishes its deadline, then looks whether it sleeps: one of the
  // two sees the other.)
  void Armed() {
    if (sleeping_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> l(mu_);
      wake_ = true;
      cv_.notify_one();
    }
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> l(mu_);
    int64_t idle_since = NowMs();
    for (;;) {
      int64_t tick = 50;
      bool armed = Scan(&tick);
      int64_t now = NowMs();
      if (armed) idle_since = now;
      if (!armed && now - idle_since > 1000) {
        sleeping_.store(true, std::memory_order_seq_cst);
        if (!Scan(&tick)) cv_.wait(l, [&] { return wake_; });
        wake_ = false;
        sleeping_.store(false, std::memory_order_seq_cst);
        idle_since = NowMs();
        continue;
      }
      cv_.wait_for(l, std::chrono::milliseconds(tick));
    }
  }

  // Fires overdue calls; true if a call is armed. *tick: the smallest tick
  // of the Conns seen.
  bool Scan(int64_t* tick) {
    bool armed = false;
    int64_t now = NowMs();
    for (Conn* c : conns_) {
      *tick = std::min(*tick, c->tick_ms);
      int64_t d = c->deadline_ms.load(std::memory_order_seq_cst);
      if (d <= 0) continue;
      armed = true;
      if (now >= d &&
          c->deadline_ms.compare_exchange_strong(d, Conn::kFiring, std::memory_order_acq_rel)) {
        if (Fire(c)) {
          c->fired.store(true, std::memory_order_relaxed);
          c->deadline_ms.store(0, std::memory_order_release);
        } else {
          // No connected socket yet (the call is still connecting): look
          // again at the next tick.
          c->deadline_ms.store(now + c->tick_ms, std::memory_order_release);
        }
      }
    }
    return armed;
  }

  // Shuts the sockets of the call's server(s) down; true if it shut one.
  static bool Fire(Conn* c) {
    bool shut = false;
    int t = c->target.load(std::memory_order_relaxed);
    for (size_t s = 0; s < c->n; ++s) {
      if (t >= 0 && static_cast<size_t>(t) != s) continue;
      // The owner thread is inside libmemcached, waiting on this socket.
      // Work on a duplicate, checked to lead to this server: should
      // libmemcached have closed the socket this instant and the number
      // been reused, the duplicate is not that socket's, or the check fails.
      int fd = __atomic_load_n(c->fd[s], __ATOMIC_RELAXED);
      if (fd < 0) continue;
      int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (dup < 0) continue;
      if (PeerIs(dup, (*c->servers)[s]) && shutdown(dup, SHUT_RDWR) == 0) shut = true;
      close(dup);
    }
    return shut;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Conn*> conns_;  // under mu_
  bool wake_ = false;         // under mu_
  std::atomic<bool> sleeping_{false};
  std::atomic<uint64_t> generation_{0};  // the fork generation it runs in; 0: none yet
  std::atomic<bool> starting_{false};
};

}  // namespace

uint64_t ForkGeneration() { return g_fork_generation.load(std::memory_order_relaxed); }

Status ParseConfig(const StoreSpec& spec, Config* cfg) {
  // REGION_PREFIX is free text (any key prefix); the reader has no type for
  // it, so it is taken out before the reader checks the rest.
  std::map<std::string, std::string> opts = spec.options;
  auto it = opts.find("REGION_PREFIX");
  if (it != opts.end()) {
    cfg->region_prefix = it->second;
    opts.erase(it);
  }
  OptionReader r(spec.region, opts);
  Status s;
  uint64_t level = 0;
  if (!(s = r.Bool("TCP_NODELAY", true, &cfg->tcp_nodelay)).ok()) return s;
  if (!(s = r.Millis("CONNECT_TIMEOUT", 1000, &cfg->connect_timeout_ms)).ok()) return s;
  if (!(s = r.Millis("POLL_TIMEOUT", 1000, &cfg->poll_timeout_ms)).ok()) return s;
  if (!(s = r.Millis("RETRY_TIMEOUT", 2000, &cfg->retry_timeout_ms)).ok()) return s;
  if (!(s = r.UInt("SERVER_FAILURE_LIMIT", 2, &cfg->failure_limit)).ok()) return s;
  if (!(s = r.Bool("REMOVE_FAILED_SERVERS", true, &cfg->remove_failed)).ok()) return s;
  if (!(s = r.Bool("BINARY_PROTOCOL", false, &cfg->binary)).ok()) return s;
  if (!(s = r.Size("MAX_ITEM_SIZE", 1 << 20, &cfg->max_item_size)).ok()) return s;
  if (!(s = r.Size("COMPRESS_MIN_SIZE", 32 << 10, &cfg->compress_min)).ok()) return s;
  if (!(s = r.UInt("COMPRESS_LEVEL", 1, &level)).ok()) return s;
  if (!(s = r.Bool("FLUSH_ALL_ON_CLEAR", false, &cfg->flush_all_on_clear)).ok()) return s;
  if (!(s = r.CheckAllUsed()).ok()) return s;
  auto bad = [&](const char* name, const std::string& why) {
    return Status::InvalidArgument(
        RegionMessage(spec.region, std::string("option ") + name + " " + why));
  };
  if (cfg->connect_timeout_ms <= 0) return bad("CONNECT_TIMEOUT", "must be more than 0 seconds");
  if (cfg->poll_timeout_ms <= 0) return bad("POLL_TIMEOUT", "must be more than 0 seconds");
  if (cfg->connect_timeout_ms > INT_MAX || cfg->poll_timeout_ms > INT_MAX)
    return bad("CONNECT_TIMEOUT/POLL_TIMEOUT", "must be under 24 days");
  if (cfg->failure_limit == 0 || cfg->failure_limit > 1000000)
    return bad("SERVER_FAILURE_LIMIT", "must be between 1 and 1000000");
  if (cfg->max_item_size < 1024 || cfg->max_item_size > (1ull << 30))
    return bad("MAX_ITEM_SIZE", "must be between 1KB and 1GB (memcached's -I)");
  if (level < 1 || level > static_cast<uint64_t>(MaxCompressLevel()))
    return bad("COMPRESS_LEVEL",
               "must be between 1 and " + std::to_string(MaxCompressLevel()) + " (zstd levels)");
  cfg->compress_level = level;
  return Status::OK();
}

Conn::~Conn() {
  // (a Conn is destroyed with its store, after the watchdog has stopped)
  for (size_t i = 0; i < n; ++i) {
    memcached_result_free(&result[i]);
    memcached_free(h[i]);
  }
}

// ---- pool ----------------------------------------------------------------------

std::unique_ptr<Conn> MemcachedStore::Acquire() {
  {
    std::lock_guard<std::mutex> l(pool_mu_);
    if (!idle_.empty()) {
      std::unique_ptr<Conn> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  auto c = std::make_unique<Conn>();
  c->h.resize(templates_.size(), nullptr);
  c->fd.resize(templates_.size(), nullptr);
  c->result = std::make_unique<memcached_result_st[]>(templates_.size());
  for (size_t i = 0; i < templates_.size(); ++i) {
    memcached_st* h = memcached_clone(nullptr, templates_[i]);
    if (!h) return nullptr;
    c->h[i] = h;
    c->fd[i] = FdOf(h);
    if (!c->fd[i]) return nullptr;
    memcached_result_create(h, &c->result[i]);
    c->n = i + 1;
  }
  c->servers = &servers_;
  c->tick_ms = tick_ms_;
  if (deadlines_ok_) Watchdog::Instance().Register(c.get());
  std::lock_guard<std::mutex> l(pool_mu_);
  all_.push_back(c.get());
  return c;
}

void MemcachedStore::Release(std::unique_ptr<Conn> c) {
  std::lock_guard<std::mutex> l(pool_mu_);
  idle_.push_back(std::move(c));
}

// ---- construction ------------------------------------------------------------

MemcachedStore::MemcachedStore(const StoreSpec& spec, Config cfg, std::vector<ServerAddr> servers)
    : StoreBase(spec.region, spec.location), cfg_(std::move(cfg)), servers_(std::move(servers)) {}

MemcachedStore::~MemcachedStore() {
  if (deadlines_ok_) Watchdog::Instance().Unregister(all_);
  idle_.clear();
  for (memcached_st* t : templates_) memcached_free(t);
}

Status MemcachedStore::Init() {
  continuum_.Build(servers_);
  health_ = std::make_unique<Health[]>(servers_.size());
  text_pools_ = std::make_unique<TextPool[]>(servers_.size());
  value_limit_ = cfg_.max_item_size + 4096;
  for (char c : cfg_.region_prefix)
    sanitized_prefix_.push_back(static_cast<unsigned char>(c) > 0x20 && c != 0x7f ? c : '_');
  for (const ServerAddr& a : servers_) {
    memcached_st* h = memcached_create(nullptr);
    if (!h) return Status::IOError(Where() + "out of memory creating a memcached handle");
    templates_.push_back(h);
    memcached_return_t rc = a.unix_socket ? memcached_server_add_unix_socket(h, a.host.c_str())
                                          : memcached_server_add(h, a.host.c_str(), a.port);
    if (memcached_failed(rc))
      return Status::InvalidArgument(Where() + "LOCATION server '" + a.name +
                                     "': " + memcached_strerror(h, rc));
    // Non-blocking sockets: the connect and poll timeouts only apply so.
    memcached_behavior_set(h, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
    memcached_behavior_set(h, MEMCACHED_BEHAVIOR_TCP_NODELAY, cfg_.tcp_nodelay ? 1 : 0);
    memcached_behavior_set(h, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
                           static_cast<uint64_t>(cfg_.connect_timeout_ms));
    memcached_behavior_set(h, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
                           static_cast<uint64_t>(cfg_.poll_timeout_ms));
    memcached_behavior_set(h, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, cfg_.binary ? 1 : 0);
    // Failure counting and retry timing are the store's (Health), shared by
    // every Conn; each handle may always try to reconnect when asked.
    memcached_behavior_set(h, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    memcached_behavior_set(h, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1u << 30);
    // A reply may claim no more than this (the value, its "\r\n" and
    // libmemcached's rounding up to 1 KB blocks); clones inherit it.
    memcached_set_memory_allocators(h, LimitedMalloc, LimitedFree, LimitedRealloc,
                                    LimitedCalloc, &value_limit_);
  }
  // The watchdog needs each handle's socket: check that the private layout
  // read by FdOf is the one this libmemcached has.
  deadlines_ok_ = true;
  for (size_t i = 0; i < servers_.size(); ++i) {
    const memcached_instance_st* inst = memcached_server_instance_by_position(templates_[i], 0);
    const auto* head = reinterpret_cast<const InstanceHead*>(inst);
    if (!inst || head->fd != -1 || head->port != memcached_server_port(inst) ||
        (!servers_[i].unix_socket && head->port != servers_[i].port))
      deadlines_ok_ = false;
  }
  if (!deadlines_ok_)
    Log(LogLevel::kWarning, region(), kind(),
        std::string("libmemcached ") + memcached_lib_version() +
            " has an unexpected connection layout: POLL_TIMEOUT bounds each wait for a "
            "server, not a whole reply");
  tick_ms_ = std::clamp<int64_t>(cfg_.poll_timeout_ms / 8, 2, 50);
  std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, OnForkChild); });
  return Status::OK();
}

// ---- deadlines -------------------------------------------------------------------

void MemcachedStore::Arm(Conn* c, int server, int64_t extra_ms) {
  if (!deadlines_ok_) return;
  Watchdog& wd = Watchdog::Instance();
  wd.EnsureRunning();
  // Not connected yet: the call connects first, within CONNECT_TIMEOUT.
  int64_t budget = cfg_.poll_timeout_ms + extra_ms;
  for (size_t i = 0; i < c->n; ++i) {
    if ((server < 0 || static_cast<size_t>(server) == i) && *c->fd[i] < 0) {
      budget += cfg_.connect_timeout_ms;
      break;
    }
  }
  c->target.store(server, std::memory_order_relaxed);
  c->deadline_ms.store(NowMs() + budget, std::memory_order_seq_cst);
  wd.Armed();
}

bool MemcachedStore::Disarm(Conn* c) {
  if (!deadlines_ok_) return false;
  int64_t d = c->deadline_ms.load(std::memory_order_acquire);
  for (;;) {
    if (d == Conn::kFiring) {  // the watchdog is shutting our sockets down
      std::this_thread::yield();
      d = c->deadline_ms.load(std::memory_order_acquire);
      continue;
    }
    if (c->deadline_ms.compare_exchange_weak(d, 0, std::memory_order_acq_rel)) break;
  }
  if (!c->fired.load(std::memory_order_relaxed)) return false;
  c->fired.store(false, std::memory_order_relaxed);
  return true;
}

// ---- routing and health -------------------------------------------------------

bool MemcachedStore::Live(int s, int64_t* now) const {
  int64_t r = health_[s].retry_at_ms.load(std::memory_order_relaxed);
  if (r == 0) return true;
  if (*now == 0) *now = NowMs();
  return *now >= r;
}

Status MemcachedStore::Route(std::string_view wire, int* server) {
  int64_t now = 0;
  // One server: no continuum to search (the failed cases go the long way,
  // for their messages).
  if (servers_.size() == 1 && Live(0, &now)) {
    *server = 0;
    return Status::OK();
  }
  uint64_t h = KeyHash(wire);
  int s = cfg_.remove_failed ? continuum_.Pick(h, [&](int i) { return Live(i, &now); })
                             : continuum_.Pick(h, [](int) { return true; });
  if (s < 0)
    return Status::Unavailable(Where() + "every memcached server has failed; retrying after " +
                               std::to_string(cfg_.retry_timeout_ms) + " ms");
  if (!cfg_.remove_failed && !Live(s, &now))
    return Status::Unavailable(Where() + "memcached server " + servers_[s].name +
                               " has failed; retrying it after RETRY_TIMEOUT");
  *server = s;
  return Status::OK();
}

Status MemcachedStore::RouteKey(std::string_view key, Routed* r) {
  r->mapped = WireKey(key, &r->storage, &r->wire);
  return Route(r->wire, &r->server);
}

bool MemcachedStore::RouteInto(std::string_view wire, size_t i,
                               std::vector<std::vector<size_t>>* by_server, Status* first_error) {
  int s;
  Status st = Route(wire, &s);
  if (!st.ok()) {
    if (first_error->ok()) *first_error = std::move(st);
    return false;
  }
  (*by_server)[s].push_back(i);
  return true;
}

void MemcachedStore::MarkOk(int s) {
  Health& h = health_[s];
  if (h.failures.load(std::memory_order_relaxed) != 0) {
    h.failures.store(0, std::memory_order_relaxed);
    h.retry_at_ms.store(0, std::memory_order_relaxed);
  }
}

bool MemcachedStore::IsDown(memcached_return_t rc) {
  switch (rc) {
    case MEMCACHED_FAILURE:
    case MEMCACHED_HOST_LOOKUP_FAILURE:
    case MEMCACHED_CONNECTION_FAILURE:
    case MEMCACHED_CONNECTION_BIND_FAILURE:
    case MEMCACHED_WRITE_FAILURE:
    case MEMCACHED_READ_FAILURE:
    case MEMCACHED_UNKNOWN_READ_FAILURE:
    case MEMCACHED_PROTOCOL_ERROR:
    case MEMCACHED_ERRNO:
    case MEMCACHED_TIMEOUT:
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
    case MEMCACHED_NO_SERVERS:
    case MEMCACHED_PARTIAL_READ:
    case MEMCACHED_IN_PROGRESS:
    case MEMCACHED_ERROR:
      return true;
    default:
      return false;
  }
}

Status MemcachedStore::NoConnection() const {
  return Status::IOError(Where() + "out of memory for a connection");
}

void MemcachedStore::LogSwallowed(const Status& st) const {
  if (st.ok()) return;
  std::string_view m = st.message();
  std::string where = Where();
  if (m.substr(0, where.size()) == where) m.remove_prefix(where.size());
  Log(LogLevel::kWarning, region(), kind(),
      std::string(m) + " (a batch the other servers answered: its keys there are misses or not stored)");
}

void MemcachedStore::CountFailure(int s) {
  Health& hl = health_[s];
  uint32_t f = hl.failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (f >= cfg_.failure_limit)
    hl.retry_at_ms.store(NowMs() + std::max<int64_t>(cfg_.retry_timeout_ms, 1),
                         std::memory_order_relaxed);
}

Status MemcachedStore::Failed(int s, memcached_st* h, memcached_return_t rc, bool fired) {
  std::string what = "memcached server " + servers_[s].name + ": ";
  bool refused = rc == MEMCACHED_MEMORY_ALLOCATION_FAILURE && t_refused != 0;
  if (fired) {
    what += "no complete reply within POLL_TIMEOUT (" + std::to_string(cfg_.poll_timeout_ms) +
            " ms); connection closed";
  } else if (refused) {
    what += "reply claims a value of " + std::to_string(t_refused - 2) +
            " bytes, more than MAX_ITEM_SIZE (" + std::to_string(cfg_.max_item_size) +
            " bytes); connection closed";
  } else {
    const char* detail = memcached_last_error_message(h);
    what += Printable(detail && *detail ? detail : memcached_strerror(h, rc), 200);
  }
  t_refused = 0;
  if (rc == MEMCACHED_E2BIG || rc == MEMCACHED_KEY_TOO_BIG) return Status::TooLarge(Where() + what);
  if (fired || IsDown(rc)) CountFailure(s);
  // Whatever is still on this connection (the rest of a value, garbage, a
  // late reply) is not in step with the next request: drop it. The socket
  // is shut first so that quit's own write cannot wait on a stopped server.
  if (deadlines_ok_) {
    const int* fdp = FdOf(h);
    if (fdp && *fdp >= 0) shutdown(*fdp, SHUT_RDWR);
  }
  memcached_quit(h);
  // Returned, not logged: the caller logs it once, or swallows it and logs
  // it then (a batch whose other servers answered: LogSwallowed).
  return Status::Unavailable(Where() + what);
}

// ---- values --------------------------------------------------------------------

Status MemcachedStore::Pack(std::string_view made, bool mapped, std::string_view data,
                            uint32_t flags, std::string_view wire, std::string* buf, std::string* zbuf,
                            std::string_view* out, uint32_t* out_flags) const {
  std::string_view payload = data;
  uint32_t f = flags;
  if (cfg_.compress_min && data.size() >= cfg_.compress_min && Encoding(flags) != kEncInt &&
      !(flags & kFlagZstd)) {
    // Worth it only if it saves an eighth: reading pays the decompression.
    if (Compress(data, static_cast<int>(cfg_.compress_level), data.size() - data.size() / 8,
                 zbuf)) {
      payload = *zbuf;
      f |= kFlagZstd;
    }
  }
  // Plain integers stay plain (the server's incr works on them); everything
  // else under a mapped key carries the made key.
  if (mapped && (Encoding(f) != kEncInt || (f & kFlagZstd))) {
    WrapEnvelope(made, payload, buf);
    payload = *buf;
    f |= kFlagKeyEnvelope;
  }
  if (wire.size() + payload.size() > cfg_.max_item_size)
    return TooLargeError(wire, data.size(), cfg_.max_item_size, payload.size());
  *out = payload;
  *out_flags = f;
  return Status::OK();
}

Status MemcachedStore::Unpack(std::string_view made, bool mapped, const char* data, size_t len,
                              uint32_t flags, Value* out) const {
  std::string_view payload(data, len);
  if (flags & kFlagKeyEnvelope) {
    std::string_view owner;
    if (!UnwrapEnvelope(payload, &owner, &payload) || owner != made) return Status::NotFound();
    flags &= ~kFlagKeyEnvelope;
  } else if (mapped && Encoding(flags) != kEncInt) {
    // A key that only looks like our mapping of this made key.
    return Status::NotFound();
  }
  if (flags & kFlagZstd) {
    uint64_t n = 0;
    if (!FrameContentSize(payload, 1ull << 31, &n))
      return Status::Corruption(Where() + "compressed value has no valid zstd frame size");
    out->data.resize(static_cast<size_t>(n));
    std::string why;
    if (!Decompress(payload, out->data.data(), out->data.size(), &why))
      return Status::Corruption(Where() + "compressed value does not decompress: " + why);
    flags &= ~kFlagZstd;
  } else {
    out->data.assign(payload.data(), payload.size());
  }
  if (Encoding(flags) == kEncInt) {
    // memcached pads a number that shrank under decr with spaces.
    while (!out->data.empty() && out->data.back() == ' ') out->data.pop_back();
  }
  out->flags = flags;
  out->expires_ms = kNever;  // memcached does not say on a get
  return Status::OK();
}

// ---- the cache contract --------------------------------------------------------

Status MemcachedStore::Get(std::string_view key, Value* out) {
  Routed rk;
  Status st = RouteKey(key, &rk);
  if (!st.ok()) return st;
  int s = rk.server;
  std::string_view wire = rk.wire;
  bool mapped = rk.mapped;
  Lease c(this);
  if (!c.ok()) return NoConnection();
  memcached_st* h = c->h[s];
  const char* keys[1] = {wire.data()};
  size_t lens[1] = {wire.size()};
  Deadline dl(this, c.get(), s);
  memcached_return_t rc = memcached_mget(h, keys, lens, 1);
  if (memcached_failed(rc)) return Failed(s, h, rc, dl.Done());
  Status result = Status::NotFound();
  memcached_result_st* r;
  while ((r = memcached_fetch_result(h, &c->result[s], &rc)) != nullptr) {
    if (result.IsNotFound())
      result = Unpack(key, mapped, memcached_result_value(r), memcached_result_length(r),
                      memcached_result_flags(r), out);
  }
  rc = FetchEnd(h, rc);
  if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_SUCCESS)
    return Failed(s, h, rc, dl.Done());
  if (dl.Done()) return Failed(s, h, rc, true);
  MarkOk(s);
  return result;
}

Status MemcachedStore::Write(WriteMode mode, std::string_view key, std::string_view data, uint32_t flags,
                             int64_t expires_ms) {
  std::string storage, buf, zbuf;
  std::string_view wire;
  bool mapped = WireKey(key, &storage, &wire);
  std::string_view payload;
  uint32_t f;
  Status st = Pack(key, mapped, data, flags, wire, &buf, &zbuf, &payload, &f);
  if (!st.ok()) return st;
  int s;
  if (!(st = Route(wire, &s)).ok()) return st;
  time_t exptime = ToExptime(expires_ms, NowMs());
  Lease c(this);
  if (!c.ok()) return NoConnection();
  memcached_st* h = c->h[s];
  memcached_return_t rc;
  Deadline dl(this, c.get(), s, static_cast<int64_t>(payload.size() >> 16));
  switch (mode) {
    case WriteMode::kSet:
      rc = memcached_set(h, wire.data(), wire.size(), payload.data(), payload.size(), exptime, f);
      break;
    case WriteMode::kAdd:
      rc = memcached_add(h, wire.data(), wire.size(), payload.data(), payload.size(), exptime, f);
      break;
    default:
      rc = memcached_replace(h, wire.data(), wire.size(), payload.data(), payload.size(), exptime,
                             f);
      break;
  }
  if (dl.Done()) return Failed(s, h, rc, true);
  if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED) {
    MarkOk(s);
    return Status::OK();
  }
  if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
    MarkOk(s);
    return Status::NotStored();
  }
  return Failed(s, h, rc);
}

// One call on a key's server: the key routed, a Conn leased; then
// call(conn, server, wire key).
template <class Call>
Status MemcachedStore::OnKeyServer(std::string_view key, Call&& call) {
  Routed rk;
  Status st = RouteKey(key, &rk);
  if (!st.ok()) return st;
  Lease c(this);
  if (!c.ok()) return NoConnection();
  return call(c.get(), rk.server, rk.wire);
}

// Touch and Delete: one request on the key's server, answered done or not
// found.
template <class Send>
Status MemcachedStore::KeyedCall(std::string_view key, Send&& send) {
  return OnKeyServer(key, [&](Conn* c, int s, std::string_view wire) {
    memcached_st* h = c->h[s];
    Deadline dl(this, c, s);
    memcached_return_t rc = send(h, wire);
    if (dl.Done()) return Failed(s, h, rc, true);
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_DELETED) {
      MarkOk(s);
      return Status::OK();
    }
    if (rc == MEMCACHED_NOTFOUND) {
      MarkOk(s);
      return Status::NotFound();
    }
    return Failed(s, h, rc);
  });
}

Status MemcachedStore::Touch(std::string_view key, int64_t expires_ms) {
  return KeyedCall(key, [&](memcached_st* h, std::string_view wire) {
    return memcached_touch(h, wire.data(), wire.size(), ToExptime(expires_ms, NowMs()));
  });
}

Status MemcachedStore::Delete(std::string_view key) {
  return KeyedCall(key, [](memcached_st* h, std::string_view wire) {
    return memcached_delete(h, wire.data(), wire.size(), 0);
  });
}

// memcached counts in unsigned 64 bits, takes deltas of 32 bits, and stops a
// decrement at 0 (as Django's memcached backends document). A stored negative
// number is not a number to the server: NotANumber sends the caller to its
// read-modify-write fallback, as does a delta beyond 32 bits.
Status MemcachedStore::Incr(std::string_view key, int64_t delta, int64_t* result) {
  uint64_t mag = delta < 0 ? uint64_t(0) - static_cast<uint64_t>(delta) : static_cast<uint64_t>(delta);
  if (mag > UINT32_MAX) return Status::NotANumber();
  return OnKeyServer(key, [&](Conn* c, int s, std::string_view wire) {
    memcached_st* h = c->h[s];
    uint64_t v = 0;
    uint32_t off = static_cast<uint32_t>(mag);
    Deadline dl(this, c, s);
    memcached_return_t rc = delta < 0 ? memcached_decrement(h, wire.data(), wire.size(), off, &v)
                                      : memcached_increment(h, wire.data(), wire.size(), off, &v);
    if (dl.Done()) return Failed(s, h, rc, true);
    if (rc == MEMCACHED_SUCCESS) {
      MarkOk(s);
      if (v > static_cast<uint64_t>(INT64_MAX)) {
        // Undo (old + delta < 2^64, so this restores the old value exactly)
        // and let the caller add in arbitrary precision.
        uint64_t back = 0;
        Deadline undo(this, c, s);
        memcached_decrement(h, wire.data(), wire.size(), off, &back);
        return Status::OutOfRange();
      }
      *result = static_cast<int64_t>(v);
      return Status::OK();
    }
    if (rc == MEMCACHED_NOTFOUND) {
      MarkOk(s);
      return Status::NotFound();
    }
    if (IsDown(rc)) return Failed(s, h, rc);
    MarkOk(s);
    return Status::NotANumber();
  });
}

Status MemcachedStore::GetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                               std::vector<bool>* found) {
  size_t n = keys.size();
  // Reset, not reassigned: a caller that reuses the vector keeps its
  // strings' capacity (no allocation a value).
  values->resize(n);
  for (Value& v : *values) {
    v.data.clear();
    v.flags = 0;
    v.expires_ms = kNever;
  }
  found->assign(n, false);
  if (n == 0) return Status::OK();
  std::vector<std::string> storage(n);  // sized once: wire views point into it
  std::vector<std::string_view> wire(n);
  std::vector<bool> mapped(n);
  std::vector<std::vector<size_t>> by_server(servers_.size());
  Status first_error;
  size_t routed = 0;
  for (size_t i = 0; i < n; ++i) {
    mapped[i] = WireKey(keys[i], &storage[i], &wire[i]);
    if (RouteInto(wire[i], i, &by_server, &first_error)) ++routed;
  }
  Lease c(this);
  if (!c.ok()) return NoConnection();
  // Send every server its multi-get first, then read the replies: the
  // servers work in parallel, and one deadline bounds the whole call.
  Deadline dl(this, c.get(), -1);
  std::vector<bool> sent(servers_.size(), false);
  size_t failed_keys = n - routed;
  for (size_t s = 0; s < servers_.size(); ++s) {
    auto& idx = by_server[s];
    if (idx.empty()) continue;
    std::vector<const char*> kp(idx.size());
    std::vector<size_t> kl(idx.size());
    for (size_t j = 0; j < idx.size(); ++j) {
      kp[j] = wire[idx[j]].data();
      kl[j] = wire[idx[j]].size();
    }
    memcached_return_t rc = memcached_mget(c->h[s], kp.data(), kl.data(), idx.size());
    if (memcached_failed(rc)) {
      Status st = Failed(static_cast<int>(s), c->h[s], rc, dl.Fired());
      if (first_error.ok()) first_error = st;
      failed_keys += idx.size();
      continue;
    }
    sent[s] = true;
  }
  Status corrupt;
  for (size_t s = 0; s < servers_.size(); ++s) {
    if (!sent[s]) continue;
    auto& idx = by_server[s];
    memcached_st* h = c->h[s];
    size_t cursor = 0;
    memcached_return_t rc;
    memcached_result_st* r;
    // Replies come in request order, hits only: match them by walking on.
    while ((r = memcached_fetch_result(h, &c->result[s], &rc)) != nullptr) {
      std::string_view k(memcached_result_key_value(r), memcached_result_key_length(r));
      size_t j = cursor;
      while (j < idx.size() && wire[idx[j]] != k) ++j;
      if (j == idx.size()) {
        for (j = 0; j < idx.size() && (wire[idx[j]] != k || (*found)[idx[j]]); ++j) {
        }
        if (j == idx.size()) continue;
      } else {
        cursor = j + 1;
      }
      size_t i = idx[j];
      Status st = Unpack(keys[i], mapped[i], memcached_result_value(r), memcached_result_length(r),
                         memcached_result_flags(r), &(*values)[i]);
      if (st.ok()) (*found)[i] = true;
      else if (!st.IsNotFound() && corrupt.ok()) corrupt = st;
    }
    rc = FetchEnd(h, rc);
    if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_SUCCESS) {
      Status st = Failed(static_cast<int>(s), h, rc, dl.Fired());
      if (first_error.ok()) first_error = st;
      failed_keys += idx.size();
    } else {
      MarkOk(static_cast<int>(s));
    }
  }
  dl.Done();
  if (!corrupt.ok()) return corrupt;
  // Keys of failed servers are misses; only a call that reached nobody fails.
  if (failed_keys == n && !first_error.ok()) return first_error;
  LogSwallowed(first_error);
  return Status::OK();
}

namespace {

using rc_t = memcached_return_t;

// Sends n requests on one handle, pipelined: all but the last with noreply,
// the last waiting for its reply. The server answers a connection's requests
// in order, so that reply means every earlier one of the batch has been
// applied: a get on any other connection afterwards sees it
// (read-your-writes). send(k) issues request k and returns SUCCESS (or
// BUFFERED) when it was accepted; the first other code stops the batch and
// is returned.
template <class Send>
rc_t SendBatch(memcached_st* h, size_t n, Send&& send) {
  memcached_behavior_set(h, MEMCACHED_BEHAVIOR_NOREPLY, 1);
  rc_t rc = MEMCACHED_SUCCESS;
  for (size_t k = 0; k < n; ++k) {
    if (k + 1 == n) memcached_behavior_set(h, MEMCACHED_BEHAVIOR_NOREPLY, 0);
    rc = send(k);
    if (rc != MEMCACHED_BUFFERED && rc != MEMCACHED_SUCCESS) break;
  }
  memcached_behavior_set(h, MEMCACHED_BEHAVIOR_NOREPLY, 0);
  return rc == MEMCACHED_BUFFERED ? MEMCACHED_SUCCESS : rc;
}

}  // namespace

Status MemcachedStore::SetMany(std::span<const WriteItem> items, std::vector<size_t>* failed) {
  failed->clear();
  size_t n = items.size();
  if (n == 0) return Status::OK();
  struct Packed {
    std::string wire, buf, zbuf;
    std::string_view payload;
    uint32_t flags = 0;
  };
  std::vector<Packed> p(n);
  std::vector<std::vector<size_t>> by_server(servers_.size());
  Status first_error;
  int64_t now = NowMs();
  for (size_t i = 0; i < n; ++i) {
    bool mapped = MakeWireKey(items[i].key, &p[i].wire);
    Status st = Pack(items[i].key, mapped, items[i].data, items[i].flags, p[i].wire,
                     &p[i].buf, &p[i].zbuf, &p[i].payload, &p[i].flags);
    int s = -1;
    if (st.ok()) st = Route(p[i].wire, &s);
    if (!st.ok()) {
      failed->push_back(i);
      if (first_error.ok()) first_error = st;
      continue;
    }
    by_server[s].push_back(i);
  }
  Lease c(this);
  if (!c.ok()) return NoConnection();
  // Pipelined with noreply: the requests go out back to back and nobody
  // waits for a reply a key. (libmemcached's BUFFER_REQUESTS, which keeps
  // the replies to drop them later, lost most of a 1000-key batch here.)
  // What fails on the server (a value it refuses late) is lost for that
  // item silently, as with any cache write; a server down fails its items.
  size_t bytes = 0;
  for (const Packed& q : p) bytes += q.payload.size() + q.wire.size();
  Deadline dl(this, c.get(), -1, static_cast<int64_t>(bytes >> 16));
  for (size_t s = 0; s < servers_.size(); ++s) {
    auto& idx = by_server[s];
    if (idx.empty()) continue;
    memcached_st* h = c->h[s];
    memcached_return_t rc = SendBatch(h, idx.size(), [&](size_t k) {
      const Packed& q = p[idx[k]];
      rc_t r = memcached_set(h, q.wire.data(), q.wire.size(), q.payload.data(), q.payload.size(),
                             ToExptime(items[idx[k]].expires_ms, now), q.flags);
      return r == MEMCACHED_STORED ? MEMCACHED_SUCCESS : r;
    });
    if (memcached_failed(rc)) {
      Status st = Failed(static_cast<int>(s), h, rc, dl.Fired());
      if (first_error.ok()) first_error = st;
      // Nothing says which buffered requests reached the server.
      for (size_t j : idx) failed->push_back(j);
    } else {
      MarkOk(static_cast<int>(s));
    }
  }
  std::sort(failed->begin(), failed->end());
  if (failed->size() == n) return first_error;
  LogSwallowed(first_error);
  return Status::OK();
}

Status MemcachedStore::DeleteWire(const std::vector<std::string>& wire, uint64_t* sent) {
  *sent = 0;
  std::vector<std::vector<size_t>> by_server(servers_.size());
  Status first_error;
  for (size_t i = 0; i < wire.size(); ++i) RouteInto(wire[i], i, &by_server, &first_error);
  Lease c(this);
  if (!c.ok()) return NoConnection();
  Deadline dl(this, c.get(), -1, static_cast<int64_t>(wire.size() >> 10));
  for (size_t s = 0; s < servers_.size(); ++s) {
    auto& idx = by_server[s];
    if (idx.empty()) continue;
    memcached_st* h = c->h[s];
    memcached_return_t rc = SendBatch(h, idx.size(), [&](size_t k) {
      const std::string& w = wire[idx[k]];
      rc_t r = memcached_delete(h, w.data(), w.size(), 0);
      return r == MEMCACHED_DELETED || r == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : r;
    });
    if (memcached_failed(rc)) {
      Status st = Failed(static_cast<int>(s), h, rc, dl.Fired());
      if (first_error.ok()) first_error = st;
    } else {
      MarkOk(static_cast<int>(s));
      *sent += idx.size();
    }
  }
  if (*sent == 0 && !wire.empty() && !first_error.ok()) return first_error;
  LogSwallowed(first_error);
  return Status::OK();
}

// deleted counts the keys whose deletes were delivered (the replies, which
// say whether each key existed, are not waited for).
Status MemcachedStore::DeleteMany(std::span<const std::string_view> keys, uint64_t* deleted) {
  std::vector<std::string> wire(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) MakeWireKey(keys[i], &wire[i]);
  return DeleteWire(wire, deleted);
}

}  // namespace mc

Status OpenMemcachedStore(const StoreSpec& spec, std::unique_ptr<Store>* out) {
  mc::Config cfg;
  Status s = mc::ParseConfig(spec, &cfg);
  if (!s.ok()) return s;
  std::vector<mc::ServerAddr> servers;
  if (!(s = mc::ParseLocation(spec.region, spec.location, &servers)).ok()) return s;
  auto store = std::make_unique<mc::MemcachedStore>(spec, std::move(cfg), std::move(servers));
  if (!(s = store->Init()).ok()) return s;
  *out = std::move(store);
  return Status::OK();
}

}  // namespace regioncache
