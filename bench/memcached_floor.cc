// The floor for bench_memcached.py: the same operations as a plain C++ loop
// over libmemcached, no Python. Built as a shared library and loaded with
// ctypes into the benchmark's own process, so the floor and the caches run
// in turns (a block of each, repeated) under the same machine load, and the
// floor sends what MemcachedCache sends: the same made key (":1:<key>"), the
// same value bytes and flags, the same expiry (Django's default 300 s).
// One ctypes call runs a whole block, so Python is not in the loop.
#include <libmemcached/memcached.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

extern "C" {

// A connected handle with the behaviours MemcachedCache uses by default
// (non-blocking sockets, TCP_NODELAY, text protocol); nullptr on failure.
void* floor_open(const char* server) {
  memcached_st* mc = memcached_create(nullptr);
  if (!mc) return nullptr;
  std::string s = server;
  memcached_return_t rc;
  if (!s.empty() && s[0] == '/') {
    rc = memcached_server_add_unix_socket(mc, s.c_str());
  } else {
    size_t colon = s.rfind(':');
    rc = colon == std::string::npos
             ? MEMCACHED_FAILURE
             : memcached_server_add(mc, s.substr(0, colon).c_str(),
                                    static_cast<in_port_t>(std::atoi(s.c_str() + colon + 1)));
  }
  if (memcached_failed(rc)) {
    memcached_free(mc);
    return nullptr;
  }
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
  return mc;
}

void floor_close(void* h) { memcached_free(static_cast<memcached_st*>(h)); }

// n gets of one key; seconds per get, or -1 if one failed or missed.
double floor_get(void* h, const char* key, size_t klen, int n) {
  auto* mc = static_cast<memcached_st*>(h);
  double t0 = Now();
  for (int i = 0; i < n; ++i) {
    size_t len;
    uint32_t flags;
    memcached_return_t rc;
    char* v = memcached_get(mc, key, klen, &len, &flags, &rc);
    if (!v) return -1;
    std::free(v);
  }
  return (Now() - t0) / n;
}

// n sets; seconds per set, or -1 if one failed.
double floor_set(void* h, const char* key, size_t klen, const char* value, size_t vlen,
                 uint32_t flags, int64_t exptime, int n) {
  auto* mc = static_cast<memcached_st*>(h);
  double t0 = Now();
  for (int i = 0; i < n; ++i)
    if (memcached_failed(
            memcached_set(mc, key, klen, value, vlen, static_cast<time_t>(exptime), flags)))
      return -1;
  return (Now() - t0) / n;
}

// n multi-gets of nkeys keys, every result fetched; seconds per multi-get,
// or -1 if one failed or came back short.
double floor_get_many(void* h, const char* const* keys, const size_t* lens, size_t nkeys, int n) {
  auto* mc = static_cast<memcached_st*>(h);
  memcached_result_st res;
  if (!memcached_result_create(mc, &res)) return -1;
  double t0 = Now();
  double out = 0;
  for (int i = 0; i < n && out == 0; ++i) {
    if (memcached_failed(memcached_mget(mc, keys, lens, nkeys))) out = -1;
    memcached_return_t rc;
    size_t got = 0;
    while (memcached_fetch_result(mc, &res, &rc)) ++got;
    if (got != nkeys) out = -1;
  }
  if (out == 0) out = (Now() - t0) / n;
  memcached_result_free(&res);
  return out;
}

}  // extern "C"
