#include "agent_client.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <QJsonDocument>
#include <QJsonValue>

extern char** environ;

namespace rcgui {

using regioncache::Status;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxLine = size_t{128} << 20;  // a 64 MiB value in base64, and room
constexpr size_t kTailBytes = 4096;
constexpr int kAskEveryMs = 200;  // a call with progress asks it this often while the agent is quiet

std::string Seconds(int ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", ms / 1000.0);
  return buf;
}

// The last few lines of text, on one line, for a message.
std::string LastLines(const std::string& text, int lines) {
  std::vector<std::string> kept;
  size_t end = text.size();
  while (end > 0 && static_cast<int>(kept.size()) < lines) {
    size_t start = text.rfind('\n', end - 1);
    const size_t from = start == std::string::npos ? 0 : start + 1;
    std::string line = text.substr(from, end - from);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) kept.insert(kept.begin(), line);
    if (start == std::string::npos) break;
    end = start;
  }
  std::string out;
  for (const auto& l : kept) out += (out.empty() ? "" : " / ") + l;
  return out;
}

Status::Code CodeOf(const QString& code) {
  if (code == "cancelled") return Status::Code::kCancelled;
  if (code == "store" || code == "internal") return Status::Code::kUnavailable;
  return Status::Code::kInvalidArgument;  // read_only, bad_request, unknown_region, ...
}

Status Make(Status::Code code, std::string msg) {
  switch (code) {
    case Status::Code::kCancelled: return Status::Cancelled(std::move(msg));
    case Status::Code::kUnavailable: return Status::Unavailable(std::move(msg));
    default: return Status::InvalidArgument(std::move(msg));
  }
}

}  // namespace

std::string ShellQuote(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) {
    if (!out.empty()) out += ' ';
    out += '\'';
    for (char c : w) {
      if (c == '\'')
        out += "'\\''";
      else
        out += c;
    }
    out += '\'';
  }
  return out;
}

std::vector<std::string> AgentCommand::Argv() const {
  if (prefix.empty()) return agent;
  std::vector<std::string> argv = prefix;
  argv.push_back(ShellQuote(agent));
  return argv;
}

// The child's stderr, drained by a thread so that the agent never blocks on
// it, keeping the last kTailBytes.
struct AgentClient::ErrTail {
  std::mutex mu;
  std::string tail;
  std::atomic<bool> stop{false};
  int fd = -1;

  void Run() {
    char buf[4096];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      int n = ::poll(&p, 1, stop ? 0 : 50);
      if (n == 0) {
        if (stop) break;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      ssize_t r = ::read(fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;  // end of stderr (or EAGAIN after stop: all drained)
      std::lock_guard<std::mutex> lock(mu);
      tail.append(buf, static_cast<size_t>(r));
      if (tail.size() > kTailBytes) tail.erase(0, tail.size() - kTailBytes);
    }
    ::close(fd);
  }
};

AgentClient::AgentClient(AgentCommand command) : command_(std::move(command)) {
  // A write to an agent that has just died must answer EPIPE, not kill the
  // app (children get the default back: posix_spawnattr_setsigdefault).
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

AgentClient::~AgentClient() {
  std::lock_guard<std::mutex> lock(call_mu_);
  if (pid_ > 0) {
    // End of input: the agent finishes and exits 0; give it a moment, then kill.
    ::close(in_fd_);
    in_fd_ = -1;
    for (int i = 0; i < 50; ++i) {
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == pid_)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  KillLocked();
}

QJsonObject AgentClient::Hello() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return hello_;
}

qint64 AgentClient::Limit(const char* name, qint64 fallback) const {
  std::lock_guard<std::mutex> lock(state_mu_);
  const QJsonValue v = hello_.value("limits").toObject().value(name);
  return v.isDouble() ? v.toInteger(fallback) : fallback;
}

QString AgentClient::LostText() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return QString::fromStdString(lost_text_);
}

QString AgentClient::StderrTail() const {
  std::shared_ptr<ErrTail> err;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    err = err_;
  }
  if (!err) return {};
  std::lock_guard<std::mutex> lock(err->mu);
  return QString::fromUtf8(err->tail);
}

void AgentClient::AllowReconnect() { lost_at_ns_ = 0; }

void AgentClient::Shutdown() {
  const pid_t pid = live_pid_.exchange(-1);
  if (pid <= 0) return;
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
}

namespace {
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
}  // namespace

Status AgentClient::ConnectLocked() {
  const std::vector<std::string> argv_s = command_.Argv();
  if (argv_s.empty()) {
    LoseLocked("no command to start the agent");
    return Status::InvalidArgument(lost_what_);
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    err_.reset();  // a failure below names this start's stderr, never the last agent's
  }
  int fds[6];
  for (int i = 0; i < 6; i += 2) {
    if (::pipe2(fds + i, O_CLOEXEC) == 0) continue;
    const int e = errno;
    for (int j = 0; j < i; ++j) ::close(fds[j]);
    LoseLocked("cannot make a pipe: " + regioncache::ErrnoText(e));
    return Status::IOError(lost_what_);
  }
  int* in = fds;
  int* out = fds + 2;
  int* err = fds + 4;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);  // the app ignores it; the agent gets it back
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: a loss kills sh and the agent both
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<char*> argv;
  for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(in[0]), ::close(out[1]), ::close(err[1]);
  if (rc != 0) {
    ::close(in[1]), ::close(out[0]), ::close(err[0]);
    LoseLocked("cannot start '" + argv_s[0] + "': " + regioncache::ErrnoText(rc));
    return Status::Unavailable(lost_what_);
  }
  pid_ = pid;
  live_pid_ = pid;
  in_fd_ = in[1];
  out_fd_ = out[0];
  ::fcntl(in_fd_, F_SETFL, ::fcntl(in_fd_, F_GETFL) | O_NONBLOCK);
  ::fcntl(err[0], F_SETFL, ::fcntl(err[0], F_GETFL) | O_NONBLOCK);
  buffer_.clear();
  auto tail = std::make_shared<ErrTail>();
  tail->fd = err[0];
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    err_ = tail;
    hello_ = QJsonObject();
  }
  err_thread_ = std::thread([tail] { tail->Run(); });

  std::string line, what;
  if (!ReadLineLocked(command_.hello_timeout_ms, &line, &what)) {
    LoseLocked(what.empty() ? what : "no hello from the agent: " + what);  // "": its exit says why
    return Status::Unavailable(lost_what_);
  }
  QJsonParseError perr;
  const QJsonDocument doc = QJsonDocument::fromJson(QByteArray::fromStdString(line), &perr);
  const QJsonObject hello = doc.object();
  if (!doc.isObject() || hello.value("hello").toString() != "regioncache-agent") {
    LoseLocked("not a regioncache agent: its first line was '" + line.substr(0, 200) + "'");
    return Status::Unavailable(lost_what_);
  }
  if (hello.value("error").isObject()) {
    const QJsonObject e = hello.value("error").toObject();
    LoseLocked("the agent could not start (" + e.value("code").toString().toStdString() +
               "): " + e.value("message").toString().toStdString());
    return Status::Unavailable(lost_what_);
  }
  if (hello.value("protocol").toInteger(-1) != 1) {
    const QJsonValue p = hello.value("protocol");
    LoseLocked("the agent speaks protocol " + (p.isDouble() ? QString::number(p.toDouble()) : QString("(none)")).toStdString() +
               "; this app knows protocol 1");
    return Status::Unavailable(lost_what_);
  }
  std::lock_guard<std::mutex> lock(state_mu_);
  hello_ = hello;
  lost_ = false;
  lost_what_.clear();
  lost_text_.clear();
  return Status::OK();
}

bool AgentClient::ReadLineLocked(int timeout_ms, std::string* line, std::string* what) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  size_t scanned = 0;
  for (;;) {
    const size_t nl = buffer_.find('\n', scanned);
    if (nl != std::string::npos) {
      line->assign(buffer_, 0, nl);
      buffer_.erase(0, nl + 1);
      if (buffer_.capacity() > (size_t{8} << 20)) buffer_.shrink_to_fit();  // after a big value
      return true;
    }
    scanned = buffer_.size();
    if (buffer_.size() > kMaxLine) {
      *what = "a reply line over " + std::to_string(kMaxLine >> 20) + " MiB";
      return false;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      *what = "no answer within " + Seconds(timeout_ms);
      return false;
    }
    pollfd p{out_fd_, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *what = "poll: " + regioncache::ErrnoText(errno);
      return false;
    }
    if (n == 0) continue;  // the deadline check above answers
    char buf[65536];
    const ssize_t r = ::read(out_fd_, buf, sizeof buf);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) {
      *what = "read: " + regioncache::ErrnoText(errno);
      return false;
    }
    if (r == 0) {
      what->clear();  // end of output: the exit says why (LoseLocked)
      return false;
    }
    buffer_.append(buf, static_cast<size_t>(r));
  }
}

bool AgentClient::WriteLocked(const std::string& line, std::string* what) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(command_.read_timeout_ms);
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t w = ::write(in_fd_, line.data() + done, line.size() - done);
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) {
      what->clear();  // EPIPE: the agent is gone; its exit says why
      return false;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      *what = "the agent took no request within " + Seconds(command_.read_timeout_ms);
      return false;
    }
    pollfd p{in_fd_, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left));
  }
  return true;
}

std::string AgentClient::ExitText() {
  if (pid_ <= 0) return {};
  // Observe the exit without reaping it, so that the group is still ours to kill.
  for (int i = 0; i < 200; ++i) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid_) {
      if (info.si_code == CLD_EXITED) return "agent exited with status " + std::to_string(info.si_status);
      return "agent killed by signal " + std::to_string(info.si_status) + " (" + strsignal(info.si_status) + ")";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return {};
}

void AgentClient::KillLocked() {
  if (pid_ > 0) {
    live_pid_ = -1;
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    for (int i = 0; i < 500; ++i) {  // bounded: a process stuck in the kernel is left behind
      const pid_t r = ::waitpid(pid_, nullptr, WNOHANG);
      if (r == pid_ || (r < 0 && errno != EINTR)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
  }
  if (in_fd_ >= 0) ::close(in_fd_);
  if (out_fd_ >= 0) ::close(out_fd_);
  in_fd_ = out_fd_ = -1;
  buffer_.clear();
  std::shared_ptr<ErrTail> err;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    err = err_;
  }
  if (err) err->stop = true;
  if (err_thread_.joinable()) err_thread_.join();
}

void AgentClient::LoseLocked(const std::string& what) {
  std::string cause = what;
  const bool silent = !what.empty();
  if (silent) {
    KillLocked();  // a deadline or a bad line: the agent may still run
  } else {
    cause = ExitText();
    if (cause.empty()) cause = "agent closed its output";
    KillLocked();
  }
  std::string tail;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (err_) {
      std::lock_guard<std::mutex> tl(err_->mu);
      tail = LastLines(err_->tail, 3);
    }
  }
  if (!tail.empty()) cause += ": " + tail;
  lost_ = true;
  lost_what_ = cause;
  lost_at_ns_ = NowNs();
  std::lock_guard<std::mutex> lock(state_mu_);
  lost_text_ = command_.source.toStdString() + ": connection lost: " + cause;
  hello_ = QJsonObject();
}

Status AgentClient::LostStatus(const std::string& region) const {
  const std::string what = command_.source.toStdString() + ": connection lost: " + lost_what_;
  return Status::Unavailable(region.empty() ? what : regioncache::RegionMessage(region, what));
}

Status AgentClient::Call(const std::string& region, QJsonObject request, QJsonObject* reply,
                         const regioncache::Progress& progress) {
  *reply = QJsonObject();
  std::lock_guard<std::mutex> lock(call_mu_);
  if (pid_ <= 0) {
    const int64_t lost_at = lost_at_ns_;
    if (lost_ && lost_at != 0 && NowNs() - lost_at < int64_t{command_.reconnect_interval_ms} * 1000000)
      return LostStatus(region);
    Status s = ConnectLocked();
    if (!s.ok()) return LostStatus(region);
  }
  const qint64 id = next_id_++;
  request["id"] = id;
  std::string what;
  if (!WriteLocked(QJsonDocument(request).toJson(QJsonDocument::Compact).toStdString() + "\n", &what)) {
    LoseLocked(what);
    return LostStatus(region);
  }
  bool cancel_sent = false;
  uint64_t done = 0;
  auto send_cancel = [&] {
    cancel_sent = true;
    QJsonObject cancel{{"id", qint64(next_id_++)}, {"op", "cancel"}, {"target", id}};
    return WriteLocked(QJsonDocument(cancel).toJson(QJsonDocument::Compact).toStdString() + "\n", &what);
  };
  auto last_line = Clock::now();
  for (;;) {
    std::string line;
    // With a progress callback, the read wakes every kAskEveryMs to ask it
    // again, so that a cancel goes out at once even while the agent is quiet.
    const bool asking = progress && !cancel_sent;
    const auto silent_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_line).count();
    const int left = command_.read_timeout_ms - static_cast<int>(std::min<int64_t>(silent_ms, INT32_MAX));
    if (left <= 0) {
      LoseLocked("no answer within " + Seconds(command_.read_timeout_ms));
      return LostStatus(region);
    }
    if (!ReadLineLocked(asking ? std::min(left, kAskEveryMs) : left, &line, &what)) {
      if (what.rfind("no answer within", 0) == 0) {  // a slice or the deadline ended: the loop decides
        if (asking && !progress(done) && !send_cancel()) {
          LoseLocked(what);
          return LostStatus(region);
        }
        continue;
      }
      LoseLocked(what);
      return LostStatus(region);
    }
    last_line = Clock::now();
    const QJsonDocument doc = QJsonDocument::fromJson(QByteArray::fromStdString(line));
    if (!doc.isObject()) {
      LoseLocked("a reply that is not a JSON object: '" + line.substr(0, 200) + "'");
      return LostStatus(region);
    }
    const QJsonObject o = doc.object();
    const QJsonValue rid = o.value("id");
    if (!rid.isNull() && !(rid.isDouble() && rid.toInteger() == id)) continue;  // our cancel's reply
    if (o.contains("progress")) {
      const qint64 n = o.value("progress").toObject().value("done").toInteger();
      done = n < 0 ? 0 : static_cast<uint64_t>(n);
      if (progress && !cancel_sent && !progress(done) && !send_cancel()) {
        LoseLocked(what);
        return LostStatus(region);
      }
      continue;
    }
    *reply = o;
    if (o.value("ok").toBool()) return Status::OK();
    const QJsonObject e = o.value("error").toObject();
    const QString code = e.value("code").toString("internal");
    std::string msg = e.value("message").toString().toStdString();
    if (msg.empty()) msg = "the agent answered an error without a message";
    if (!region.empty() && msg.find(region) == std::string::npos) msg = regioncache::RegionMessage(region, msg);
    return Make(CodeOf(code), msg + " (" + command_.source.toStdString() + ", " + code.toStdString() + ")");
  }
}

}  // namespace rcgui
