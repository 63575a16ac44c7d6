// The shared C++ test harness: see test_support.h.
#include "test_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "regioncache/codec.h"
#include "regioncache/log.h"
#include "regioncache/shm_store.h"

namespace regioncache::testing {

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a = Loopback(0);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

bool PortAnswers(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a = Loopback(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

MemcachedServer::MemcachedServer(int megabytes) : port_(FreePort()) {
  int nope[2];  // closed on a successful exec; carries errno otherwise
  if (pipe2(nope, O_CLOEXEC) != 0) {
    error_ = "pipe failed";
    return;
  }
  // Everything the child needs is made before fork: a program with threads
  // (the app's tests) must not allocate between fork and exec.
  std::string p = std::to_string(port_), m = std::to_string(megabytes);
  std::vector<const char*> argv{"memcached", "-l", "127.0.0.1", "-p", p.c_str(), "-U", "0",
                                "-m", m.c_str(), "-t", "1"};
  // -u root: memcached refuses to run as root without it (CI runs as root).
  if (geteuid() == 0) argv.insert(argv.end(), {"-u", "root"});
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    close(nope[0]);
    execvp("memcached", const_cast<char* const*>(argv.data()));
    int e = errno;
    if (write(nope[1], &e, sizeof e) != sizeof e) _exit(127);
    _exit(127);
  }
  close(nope[1]);
  int e = 0;
  if (pid_ < 0) {
    error_ = "fork failed";
  } else if (read(nope[0], &e, sizeof e) == sizeof e) {
    error_ = std::string("cannot run memcached (the memcached tests need the real server): ") +
             strerror(e);
  } else {
    for (int i = 0; i < 500 && !PortAnswers(port_); ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (pid_ < 0 || !PortAnswers(port_))
      error_ = "memcached on 127.0.0.1:" + std::to_string(port_) + " does not answer";
  }
  close(nope[0]);
}

MemcachedServer::~MemcachedServer() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

void MemcachedServer::Stop() {
  kill(pid_, SIGSTOP);
  std::string path = "/proc/" + std::to_string(pid_) + "/task";
  for (int i = 0; i < 500; ++i) {
    bool all = true;
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream f(path + "/" + e->d_name + "/stat");
        std::string stat((std::istreambuf_iterator<char>(f)), {});
        size_t rp = stat.rfind(')');
        if (rp == std::string::npos || rp + 2 >= stat.size() || stat[rp + 2] != 'T') all = false;
      }
      closedir(d);
    }
    if (all) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void MemcachedServer::Continue() { kill(pid_, SIGCONT); }

const char* ChildEndName(ChildEnd e) {
  switch (e) {
    case ChildEnd::kOk: return "ok";
    case ChildEnd::kFailed: return "failed an assertion / saw a wrong value";
    case ChildEnd::kCrashed: return "crashed";
    case ChildEnd::kHung: return "hung";
  }
  return "?";
}

ChildEnd RunInChild(const std::function<int()>& fn, int deadline_s) {
  pid_t pid = fork();
  if (pid == 0) {
    alarm(static_cast<unsigned>(deadline_s));  // a hang ends as SIGALRM
    int rc = 1;
    try {
      rc = fn();
    } catch (...) {
      rc = 1;
    }
    _exit(rc);
  }
  if (pid < 0) return ChildEnd::kFailed;
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return WTERMSIG(status) == SIGALRM ? ChildEnd::kHung : ChildEnd::kCrashed;
  return WEXITSTATUS(status) == 0 ? ChildEnd::kOk : ChildEnd::kFailed;
}

std::string ChildOutput(const std::function<std::string()>& fn, int* status) {
  *status = -1;
  int out[2];
  if (pipe(out) != 0) return "";
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return "";
  }
  if (pid == 0) {
    close(out[0]);
    std::string text = fn();
    if (write(out[1], text.data(), text.size()) != ssize_t(text.size())) _exit(120);
    _exit(0);
  }
  close(out[1]);
  std::string got;
  char buf[512];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof buf)) > 0) got.append(buf, size_t(n));
  close(out[0]);
  waitpid(pid, status, 0);
  return got;
}

std::string RunInChildrenAtOnce(int n, const std::function<int(int)>& fn) {
  int go[2];
  if (pipe(go) != 0) return "pipe failed";
  std::vector<pid_t> pids;
  std::string failed;
  for (int c = 0; c < n; ++c) {
    pid_t pid = fork();
    if (pid < 0) {
      failed += "fork failed; ";
      break;
    }
    if (pid == 0) {
      close(go[1]);
      char b;
      if (read(go[0], &b, 1) != 0) _exit(9);  // EOF: everyone starts
      _exit(fn(c));
    }
    pids.push_back(pid);
  }
  close(go[0]);
  close(go[1]);
  for (pid_t p : pids) {
    int status = 0;
    waitpid(p, &status, 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
      failed += "child status " + std::to_string(status) + "; ";
  }
  return failed;
}

std::string KillNineRounds::Round(const std::function<void(const Ready& ready)>& writer) {
  int ready[2];
  if (pipe(ready) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    close(ready[0]);
    writer([&] {
      if (write(ready[1], "r", 1) != 1) _exit(3);
    });
    _exit(4);  // a writer that returns was not killed mid-write
  }
  close(ready[1]);
  char c;
  bool got_ready = read(ready[0], &c, 1) == 1;
  close(ready[0]);
  if (got_ready)
    std::this_thread::sleep_for(min_ + std::chrono::microseconds(rng_() % spread_.count()));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!got_ready) return "the writer never got ready, status " + std::to_string(status);
  if (!WIFSIGNALED(status))
    return "the writer stopped on its own, status " + std::to_string(status);
  return "";
}

namespace {

std::mutex g_log_mu;
std::string g_log;

void CaptureSink(LogLevel, std::string_view region, std::string_view store,
                 std::string_view msg) {
  std::lock_guard<std::mutex> g(g_log_mu);
  g_log.append("region '").append(region).append("' (").append(store).append("): ");
  g_log.append(msg).append("\n");
}

}  // namespace

LogCapture::LogCapture() {
  Clear();
  SetLogSink(CaptureSink);
}

LogCapture::~LogCapture() { SetLogSink(nullptr); }

std::string LogCapture::Text() const {
  std::lock_guard<std::mutex> g(g_log_mu);
  return g_log;
}

bool LogCapture::Contains(std::string_view part) const {
  std::lock_guard<std::mutex> g(g_log_mu);
  return g_log.find(part) != std::string::npos;
}

void LogCapture::Clear() {
  std::lock_guard<std::mutex> g(g_log_mu);
  g_log.clear();
}

std::string LogCapture::Take() {
  SetLogSink(nullptr);
  std::lock_guard<std::mutex> g(g_log_mu);
  return std::exchange(g_log, std::string());
}

TempDir::TempDir(const std::string& tag) {
  std::string tmpl = "/tmp/" + tag + ".XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data())) path_ = buf.data();
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ReadFile(const std::string& path) {
  std::string s;
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) return s;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  fclose(f);
  return s;
}

bool WriteFile(const std::string& path, std::string_view data) {
  FILE* f = fopen(path.c_str(), "wb");
  if (!f) return false;
  bool ok = fwrite(data.data(), 1, data.size(), f) == data.size();
  return fclose(f) == 0 && ok;
}

ScratchShmRegion::ScratchShmRegion(std::string_view label)
    : name_(std::string(label) + "-" + std::to_string(getpid())) {
  RemoveShmRegion(name_);
}

ScratchShmRegion::~ScratchShmRegion() { RemoveShmRegion(name_); }

KeyedValues MakeKeyedValues(int n, size_t len) {
  KeyedValues kv;
  for (int i = 0; i < n; ++i) {
    // Appended: GCC 12 at -O3 takes "k" + std::to_string(i) for an
    // overlapping memcpy (a false -Wrestrict).
    std::string key = "k";
    key += std::to_string(i);
    kv.keys.push_back(std::move(key));
    kv.full.push_back(ValueFor(kv.keys.back(), len));
  }
  return kv;
}

std::string ValueFor(std::string_view key, size_t len) {
  std::string v(len, '\0');
  uint64_t x = std::hash<std::string_view>{}(key);
  for (size_t i = 0; i < len; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = static_cast<char>('a' + (x >> 59));
  }
  return v;
}

std::string SetKeysToTheirNames(Store* s, const std::string& prefix, int n,
                                std::vector<std::string>* keys) {
  keys->clear();
  for (int i = 0; i < n; ++i) keys->push_back(prefix + std::to_string(i));
  std::vector<WriteItem> items;
  for (const auto& k : *keys) items.push_back(WriteItem{k, k, kEncStr, kNever});
  std::vector<size_t> failed;
  Status st = s->SetMany(items, &failed);
  if (!st.ok()) return st.ToString();
  if (!failed.empty()) return std::to_string(failed.size()) + " keys not stored";
  return "";
}

}  // namespace regioncache::testing
