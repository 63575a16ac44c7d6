// A plain text-protocol connection of its own to one memcached server, for
// the commands libmemcached has no call for (lru_crawler metadump, mg, ms/md
// with a CAS, stats items/slabs). One request at a time: each command is
// written, then its whole reply read, before the next (no pipelining, so a
// crawler dump never interleaves with anything). Inspection makes one per
// call; Peek and CompareAndSwap keep them in a small pool a server
// (mc_atomic.cc), which takes back only a connection whose replies were read
// whole (Reusable).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "memcached/mc_servers.h"
#include "regioncache/status.h"

namespace regioncache::mc {

// Protocol text from a server, fit for a message: printable ASCII, other
// bytes as \xNN, at most max bytes of it.
std::string Printable(std::string_view s, size_t max = 80);

// The same in single quotes: 'END\x00'.
std::string Quoted(std::string_view s, size_t max = 80);

// Every reply has a deadline: Send starts it (io_timeout_ms for the whole
// reply, not for each read), and a streaming reply (a metadump) may earn
// more time by arriving at min_rate bytes a second or faster (SetMinRate).
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
  // Writes a command and starts its reply's deadline (io_timeout_ms, plus
  // extra_ms for a big command).
  Status Send(std::string_view command, int64_t extra_ms = 0);
  // The same for a command in parts (a header, a value, its "\r\n"),
  // written with one sendmsg each time the socket takes them, no copy.
  Status Send(std::initializer_list<std::string_view> parts, int64_t extra_ms = 0);
  // Connected, nothing unread, and the server has neither closed its end nor
  // sent anything unasked (a zero-timeout poll): fit for the next request.
  bool Reusable();
  // Connected and nothing unread (no syscall).
  bool Drained() const { return fd_ >= 0 && pos_ == buf_.size(); }
  // The fork generation (ForkGeneration, mc_store.h) it was connected in,
  // for the pool that keeps it.
  uint64_t generation = 0;
  // Closes the connection (a reply it no longer trusts).
  void Close() { Abandon(""); }
  // From the next Send on: the reply's deadline moves on by 1 s for each
  // min_rate bytes received (0: a fixed deadline).
  void SetMinRate(uint64_t min_rate) { min_rate_ = min_rate; }
  // Longest line a reply may have.
  static constexpr size_t kMaxLine = 64 << 10;
  // A Corruption status naming the region and the server.
  Status Garbled(const std::string& what);
  const std::string& server() const { return server_; }
  // One line without its "\r\n" (or "\n": metadump ends lines with '\n').
  Status ReadLine(std::string* line);
  // n bytes then the "\r\n" that follows them.
  Status ReadBlock(size_t n, std::string* out);

 private:
  // Closes the connection; "region 'x': memcached server S: <what>".
  std::string Abandon(std::string_view what);
  // Unavailable naming the region and the server (and errno when err != 0).
  Status Fail(const std::string& what, int err);
  // Waits until the socket is ready for events; by deadline_ms, else Fail:
  // "<late> within <io timeout> ms", or "<op>: <errno text>".
  Status Await(short events, int64_t deadline_ms, const char* late, const char* op);
  Status Fill();

  std::string region_;
  std::string server_;
  int64_t connect_timeout_ms_;
  int64_t io_timeout_ms_;
  int fd_ = -1;
  std::string buf_;
  size_t pos_ = 0;
  int64_t deadline_ms_ = 0;  // of the reply being read
  uint64_t received_ = 0;    // bytes of it so far
  uint64_t min_rate_ = 0;
};

}  // namespace regioncache::mc
