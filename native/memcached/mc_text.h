// A plain text-protocol connection of its own to one memcached server, for
// the commands libmemcached has no call for (lru_crawler metadump, mg, stats
// items/slabs). One request at a time: each command is written, then its
// whole reply read, before the next (no pipelining, so a crawler dump never
// interleaves with anything).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "memcached/mc_servers.h"
#include "regioncache/status.h"

namespace regioncache::mc {

class TextConn {
 public:
  TextConn(std::string region, int64_t connect_timeout_ms, int64_t io_timeout_ms)
      : region_(std::move(region)),
        connect_timeout_ms_(connect_timeout_ms),
        io_timeout_ms_(io_timeout_ms) {}
  ~TextConn();
  TextConn(const TextConn&) = delete;
  TextConn& operator=(const TextConn&) = delete;

  Status Connect(const ServerAddr& server);
  Status Send(std::string_view command);
  // One line without its "\r\n" (or "\n": metadump ends lines with '\n').
  Status ReadLine(std::string* line);
  // n bytes then the "\r\n" that follows them.
  Status ReadBlock(size_t n, std::string* out);

 private:
  Status Fail(const std::string& what, int err);
  Status Fill();

  std::string region_;
  std::string server_;
  int64_t connect_timeout_ms_;
  int64_t io_timeout_ms_;
  int fd_ = -1;
  std::string buf_;
  size_t pos_ = 0;
};

}  // namespace regioncache::mc
