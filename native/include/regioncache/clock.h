// Wall-clock time in epoch milliseconds. Expiry is absolute and must mean the
// same in every process and after a restart, hence CLOCK_REALTIME.
#pragma once

#include <cstdint>
#include <ctime>

namespace regioncache {

inline int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// An entry with this expiry is gone at time now.
inline bool IsExpired(int64_t expires_ms, int64_t now_ms) {
  return expires_ms != 0 && expires_ms <= now_ms;
}

}  // namespace regioncache
