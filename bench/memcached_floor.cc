// The floor for bench_memcached.py: the same operations from a plain C++
// loop over libmemcached, no Python. Prints one line per operation:
//   <op> <microseconds per call>
// Usage: memcached_floor <server: host:port or /socket/path> <iterations>
#include <libmemcached/memcached.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Check(memcached_st* mc, memcached_return_t rc, const char* what) {
  if (memcached_failed(rc)) {
    std::fprintf(stderr, "%s: %s\n", what, memcached_last_error_message(mc));
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <host:port|/socket> <iterations>\n", argv[0]);
    return 2;
  }
  std::string server = argv[1];
  int iters = std::atoi(argv[2]);
  memcached_st* mc = memcached_create(nullptr);
  if (server[0] == '/') {
    Check(mc, memcached_server_add_unix_socket(mc, server.c_str()), "add socket");
  } else {
    size_t colon = server.rfind(':');
    Check(mc, memcached_server_add(mc, server.substr(0, colon).c_str(),
                                   static_cast<in_port_t>(std::atoi(server.c_str() + colon + 1))),
          "add server");
  }
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
  for (size_t size : {size_t(100), size_t(10240)}) {
    std::string key = "floor:" + std::to_string(size);
    std::string value(size, 'v');
    Check(mc, memcached_set(mc, key.data(), key.size(), value.data(), value.size(), 0, 0), "set");
    double t0 = Now();
    for (int i = 0; i < iters; ++i) {
      size_t len;
      uint32_t flags;
      memcached_return_t rc;
      char* v = memcached_get(mc, key.data(), key.size(), &len, &flags, &rc);
      if (!v) Check(mc, rc == MEMCACHED_SUCCESS ? MEMCACHED_FAILURE : rc, "get");
      std::free(v);
    }
    std::printf("get_%zu %.3f\n", size, (Now() - t0) / iters * 1e6);
    t0 = Now();
    for (int i = 0; i < iters; ++i)
      Check(mc, memcached_set(mc, key.data(), key.size(), value.data(), value.size(), 0, 0), "set");
    std::printf("set_%zu %.3f\n", size, (Now() - t0) / iters * 1e6);
  }
  // get_many: one multi-get of 100 keys of 100 bytes, every result fetched.
  std::vector<std::string> keys;
  std::string value(100, 'm');
  for (int i = 0; i < 100; ++i) {
    keys.push_back("floor:many:" + std::to_string(i));
    Check(mc, memcached_set(mc, keys.back().data(), keys.back().size(), value.data(), value.size(), 0, 0),
          "set");
  }
  std::vector<const char*> kp;
  std::vector<size_t> kl;
  for (auto& k : keys) {
    kp.push_back(k.data());
    kl.push_back(k.size());
  }
  memcached_result_st res;
  memcached_result_create(mc, &res);
  int many_iters = iters / 10 > 0 ? iters / 10 : 1;
  double t0 = Now();
  for (int i = 0; i < many_iters; ++i) {
    Check(mc, memcached_mget(mc, kp.data(), kl.data(), kp.size()), "mget");
    memcached_return_t rc;
    int got = 0;
    while (memcached_fetch_result(mc, &res, &rc)) ++got;
    if (got != 100) {
      std::fprintf(stderr, "mget returned %d of 100\n", got);
      return 1;
    }
  }
  std::printf("get_many_100 %.3f\n", (Now() - t0) / many_iters * 1e6);
  memcached_result_free(&res);
  memcached_free(mc);
  return 0;
}
