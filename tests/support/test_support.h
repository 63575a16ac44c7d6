// The C++ tests' shared harness (tests/cpp/* and the desktop app's tests in
// gui/tests): free loopback ports, real memcached servers, forked children
// with a deadline, kill -9 rounds, a capture of what the stores log, and
// temporary directories. No GoogleTest here (the app's tests use QtTest):
// helpers report failures as text, "" meaning success.
#pragma once

#include <netinet/in.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "regioncache/store.h"

namespace regioncache::testing {

// ------------------------------------------------------------- network --

// A TCP port on 127.0.0.1 that nothing listened on a moment ago (0 if the
// system would not give one).
int FreePort();

// 127.0.0.1:port as a socket address.
sockaddr_in Loopback(int port);

// Whether a TCP connection to 127.0.0.1:port is accepted.
bool PortAnswers(int port);

// A real memcached on 127.0.0.1, on a free port, for the life of the
// object. A missing binary or a server that does not answer is reported by
// up() and error() (the tests then fail; they never skip).
class MemcachedServer {
 public:
  explicit MemcachedServer(int megabytes = 32);
  ~MemcachedServer();
  MemcachedServer(const MemcachedServer&) = delete;
  MemcachedServer& operator=(const MemcachedServer&) = delete;

  bool up() const { return error_.empty() && PortAnswers(port_); }
  const std::string& error() const { return error_; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string location() const { return "127.0.0.1:" + std::to_string(port_); }
  // SIGSTOP, returning once every thread of the server has stopped.
  void Stop();
  void Continue();

 private:
  int port_;
  pid_t pid_ = -1;
  std::string error_;
};

// --------------------------------------------------------- processes --

// How a forked child ended.
enum class ChildEnd { kOk, kFailed, kCrashed, kHung };
const char* ChildEndName(ChildEnd e);

// Runs fn in a forked child that must end within deadline_s (a hang ends
// as SIGALRM). fn returns 0 for success; an exception counts as failure.
ChildEnd RunInChild(const std::function<int()>& fn, int deadline_s = 20);

// Runs fn in a forked child and returns what it returned, carried back
// through a pipe; *status receives the child's wait status (-1 if it could
// not be started). fn may end the child early with _exit(code).
std::string ChildOutput(const std::function<std::string()>& fn, int* status);

// Runs fn(i) in n forked children released together; "" when every one
// exited 0, else the statuses of those that did not.
std::string RunInChildrenAtOnce(int n, const std::function<int(int)>& fn);

// kill -9 rounds: each Round forks a writer, waits until it says it is
// ready (it calls ready() once set up, then writes until killed), lets it
// run for min + a random part of spread, kills it with SIGKILL and reaps
// it. Round returns "" when the writer died of the kill, else what
// happened (it stopped on its own, or never got ready).
class KillNineRounds {
 public:
  KillNineRounds(uint32_t seed, std::chrono::microseconds min, std::chrono::microseconds spread)
      : rng_(seed), min_(min), spread_(spread) {}
  using Ready = std::function<void()>;
  std::string Round(const std::function<void(const Ready& ready)>& writer);

 private:
  std::mt19937 rng_;
  std::chrono::microseconds min_, spread_;
};

// ----------------------------------------------------------------- log --

// While alive, every line the stores log (regioncache::Log) is kept, one
// line each as "region 'R' (kind): message". One at a time per process.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  std::string Text() const;  // every line so far, each ending in "\n"
  bool Contains(std::string_view part) const;
  void Clear();
  // Stops capturing (the destructor does too) and returns what was caught.
  std::string Take();

 private:
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
};

// --------------------------------------------------------------- files --

// A fresh private directory under /tmp ("/tmp/<tag>.XXXXXX"), removed with
// everything in it when the object goes.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "regioncache-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A whole file's bytes ("" if it cannot be read).
std::string ReadFile(const std::string& path);
// Replaces a file's bytes; false if it cannot be written.
bool WriteFile(const std::string& path, std::string_view data);

// A shared-memory region of the test's own, "<label>-<pid>", removed
// before and after use.
class ScratchShmRegion {
 public:
  explicit ScratchShmRegion(std::string_view label);
  ~ScratchShmRegion();
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  ScratchShmRegion(const ScratchShmRegion&) = delete;
  ScratchShmRegion& operator=(const ScratchShmRegion&) = delete;
};

// ---------------------------------------------------------------- values --

// A value whose content can be checked from its key alone.
std::string ValueFor(std::string_view key, size_t len);

// The keys k0 .. k{n-1} and, for each, ValueFor(key, len): a writer stores
// prefixes of these, so a reader can tell a whole value from a torn one.
struct KeyedValues {
  std::vector<std::string> keys, full;
};
KeyedValues MakeKeyedValues(int n, size_t len);

// Stores prefix0 .. prefix{n-1}, each holding its own name (kEncStr, no
// expiry), in one SetMany; *keys receives the names. "" when all were
// stored, else what went wrong.
std::string SetKeysToTheirNames(Store* s, const std::string& prefix, int n,
                                std::vector<std::string>* keys);

}  // namespace regioncache::testing
