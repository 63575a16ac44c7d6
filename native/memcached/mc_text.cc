// TextConn: a text-protocol connection of its own to one server, with a
// deadline on every reply, for what libmemcached has no call for (used by
// mc_inspect.cc and mc_atomic.cc); and Printable, server text made fit for
// a message.
#include "memcached/mc_text.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "regioncache/clock.h"

namespace regioncache::mc {

std::string Printable(std::string_view s, size_t max) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (char ch : s.substr(0, max)) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(ch);
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string Quoted(std::string_view s, size_t max) {
  // Appended, not "'" + Printable(s): GCC 12 at -O3 reads that operator+
  // as an overlapping memcpy (a false -Wrestrict, fatal under -Werror).
  std::string out(1, '\'');
  out += Printable(s, max);
  out += '\'';
  return out;
}

namespace {

// Waits for events on fd; 0 on readiness, ETIMEDOUT or errno.
int WaitFor(int fd, short events, int64_t timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    int r = poll(&p, 1, static_cast<int>(timeout_ms));
    if (r > 0) return 0;
    if (r == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
  }
}

int ConnectFd(int fd, const sockaddr* addr, socklen_t len, int64_t timeout_ms) {
  if (connect(fd, addr, len) == 0) return 0;
  if (errno != EINPROGRESS && errno != EAGAIN) return errno;
  int w = WaitFor(fd, POLLOUT, timeout_ms);
  if (w) return w;
  int err = 0;
  socklen_t el = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) return errno;
  return err;
}

}  // namespace

TextConn::~TextConn() {
  if (fd_ >= 0) close(fd_);
}

std::string TextConn::Abandon(std::string_view what) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return RegionMessage(region_, "memcached server " + server_ + ": " + std::string(what));
}

Status TextConn::Fail(const std::string& what, int err) {
  std::string msg = Abandon(what);
  if (err) msg += ": " + ErrnoText(err);
  return Status::Unavailable(std::move(msg));
}

Status TextConn::Garbled(const std::string& what) {
  return Status::Corruption(Abandon("garbled reply: " + what));
}

Status TextConn::Await(short events, int64_t deadline_ms, const char* late, const char* op) {
  int64_t left = deadline_ms - NowMs();
  int w = left > 0 ? WaitFor(fd_, events, left) : ETIMEDOUT;
  if (w == ETIMEDOUT)
    return Fail(late + std::string(" within ") + std::to_string(io_timeout_ms_) + " ms", 0);
  if (w) return Fail(op, w);
  return Status::OK();
}

Status TextConn::Connect(const ServerAddr& server) {
  server_ = server.name;
  buf_.clear();
  pos_ = 0;
  if (server.unix_socket) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (server.host.size() >= sizeof(sa.sun_path))
      return Status::InvalidArgument(RegionMessage(region_, "socket path too long: " + server.host));
    std::memcpy(sa.sun_path, server.host.c_str(), server.host.size() + 1);
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Fail("socket", errno);
    int err = ConnectFd(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa), connect_timeout_ms_);
    if (err) return Fail("connect", err);
    return Status::OK();
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(server.port);
  int gai = getaddrinfo(server.host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) return Fail(std::string("host lookup: ") + gai_strerror(gai), 0);
  int err = ECONNREFUSED;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd_ = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd_ < 0) {
      err = errno;
      continue;
    }
    err = ConnectFd(fd_, ai->ai_addr, ai->ai_addrlen, connect_timeout_ms_);
    if (err == 0) break;
    close(fd_);
    fd_ = -1;
  }
  freeaddrinfo(res);
  if (fd_ < 0) return Fail("connect", err);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return Status::OK();
}

Status TextConn::Send(std::string_view command, int64_t extra_ms) {
  return Send({command}, extra_ms);
}

Status TextConn::Send(std::initializer_list<std::string_view> parts, int64_t extra_ms) {
  if (fd_ < 0) return Fail("not connected", 0);
  deadline_ms_ = NowMs() + io_timeout_ms_ + std::max<int64_t>(extra_ms, 0);
  received_ = 0;
  constexpr size_t kMaxParts = 4;
  iovec iov[kMaxParts];
  size_t n = 0;
  for (std::string_view p : parts) {
    if (p.empty()) continue;
    if (n == kMaxParts) return Fail("a command of more than 4 parts", 0);
    iov[n++] = iovec{const_cast<char*>(p.data()), p.size()};
  }
  size_t first = 0;
  while (first < n) {
    msghdr mh{};
    mh.msg_iov = iov + first;
    mh.msg_iovlen = n - first;
    ssize_t w = sendmsg(fd_, &mh, MSG_NOSIGNAL);
    if (w > 0) {
      size_t left = static_cast<size_t>(w);
      while (first < n && left >= iov[first].iov_len) left -= iov[first++].iov_len;
      if (first < n) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      Status s = Await(POLLOUT, deadline_ms_, "command not taken", "write");
      if (!s.ok()) return s;
      continue;
    }
    return Fail("write", w < 0 ? errno : 0);
  }
  return Status::OK();
}

bool TextConn::Reusable() {
  if (!Drained()) return false;
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  int r;
  do {
    r = poll(&p, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r == 0;
}

Status TextConn::Fill() {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > (1 << 20)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  char tmp[65536];
  for (;;) {
    ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      received_ += static_cast<uint64_t>(n);
      return Status::OK();
    }
    if (n == 0) return Fail("connection closed by the server", 0);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      // The whole reply is due by the deadline (a streaming one earns time
      // by the bytes it has sent), whatever pace its bytes come at.
      int64_t deadline = deadline_ms_;
      if (min_rate_) deadline += static_cast<int64_t>(received_ * 1000 / min_rate_);
      Status s = Await(POLLIN, deadline, "no complete reply", "read");
      if (!s.ok()) return s;
      continue;
    }
    return Fail("read", errno);
  }
}

Status TextConn::ReadLine(std::string* line) {
  if (fd_ < 0) return Fail("not connected", 0);
  for (;;) {
    size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      size_t end = nl;
      if (end > pos_ && buf_[end - 1] == '\r') --end;
      line->assign(buf_, pos_, end - pos_);
      pos_ = nl + 1;
      return Status::OK();
    }
    if (buf_.size() - pos_ > kMaxLine)
      return Garbled("a line of more than " + std::to_string(kMaxLine) + " bytes: '" +
                     Printable(std::string_view(buf_).substr(pos_, 40)) + "'");
    Status s = Fill();
    if (!s.ok()) return s;
  }
}

Status TextConn::ReadBlock(size_t n, std::string* out) {
  if (fd_ < 0) return Fail("not connected", 0);
  while (buf_.size() - pos_ < n + 2) {
    Status s = Fill();
    if (!s.ok()) return s;
  }
  if (buf_.compare(pos_ + n, 2, "\r\n") != 0)
    return Garbled("a value block not ended by \\r\\n");
  out->assign(buf_, pos_, n);
  pos_ += n + 2;
  return Status::OK();
}

}  // namespace regioncache::mc
