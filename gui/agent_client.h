// The app's side of the inspection agent's protocol (docs/AGENT.md, version
// 1): starts `<prefix> <agent words>` as a child process over POSIX pipes
// (the prefix is the transport: `ssh ... user@host --`, `sh -c` in tests, or
// nothing), reads its hello, then sends one request at a time and reads its
// reply. Used from the app's worker threads, never from the UI thread: every
// call may block, but never longer than its deadline.
//
// A dead or silent agent (end of output, exit, a deadline passed) marks the
// connection lost: the child's process group is killed and reaped, and every
// call answers Unavailable naming the region, the source and what happened.
// The next call after a loss starts the agent again, at most once every
// reconnect interval (calls in between answer the loss at once);
// AllowReconnect() lifts that wait (the user's refresh).
#pragma once

#include <sys/types.h>

#include <QJsonObject>
#include <QString>
#include <QStringList>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "regioncache/status.h"
#include "regioncache/store.h"

namespace rcgui {

// The words of a POSIX shell command line that runs exactly `words`: each
// single-quoted ('' inside as '\''), joined by spaces. What ssh's remote
// shell and `sh -c` parse back into the same words.
std::string ShellQuote(const std::vector<std::string>& words);

struct AgentCommand {
  // The transport: ssh and its options up to `--`, `sh -c`, or empty (the
  // agent's words are exec'ed directly). A non-empty prefix gets the agent's
  // words as one more argument, quoted by ShellQuote.
  std::vector<std::string> prefix;
  std::vector<std::string> agent;  // python -m regioncache agent --settings ...
  QString source;                  // for messages: "ssh deploy@web1"
  int hello_timeout_ms = 60000;    // start, connect, import Django
  int read_timeout_ms = 60000;     // between two lines of one reply
  int reconnect_interval_ms = 2000;

  // The argv run: prefix + quoted agent words, or the agent words alone.
  std::vector<std::string> Argv() const;
};

class AgentClient {
 public:
  explicit AgentClient(AgentCommand command);
  ~AgentClient();
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  const AgentCommand& command() const { return command_; }
  const QString& source() const { return command_.source; }

  // Sends request (an "op" and its arguments; the id is added) and waits for
  // its reply, starting the agent first when needed. A progress line calls
  // progress(done); a false answer sends `cancel` and the call goes on to the
  // reply (then an error of code `cancelled`). An error reply answers a
  // Status carrying the agent's message (which names the region), its code
  // and the source; *reply still holds the reply (a cancelled purge's
  // "removed"). region names the region in messages of a lost connection.
  regioncache::Status Call(const std::string& region, QJsonObject request, QJsonObject* reply,
                           const regioncache::Progress& progress = {});

  // The hello of the running agent (empty before the first connection).
  QJsonObject Hello() const;
  // The agent's limits from its hello ("max_value_bytes", ...), or fallback.
  qint64 Limit(const char* name, qint64 fallback) const;
  // "" while connected or never tried; else what ended the connection.
  QString LostText() const;
  // The next call reconnects at once, not after the reconnect interval.
  void AllowReconnect();
  // The last lines the child wrote on stderr (bounded).
  QString StderrTail() const;
  // Kills the running agent at once without waiting for a call under way
  // (which then ends as a lost connection): the window closing. Any thread.
  void Shutdown();

 private:
  regioncache::Status ConnectLocked();
  void LoseLocked(const std::string& what);
  void KillLocked();
  regioncache::Status LostStatus(const std::string& region) const;
  // Reads one line from the agent within timeout_ms; false with *what set
  // on end of output, a read error or the deadline.
  bool ReadLineLocked(int timeout_ms, std::string* line, std::string* what);
  bool WriteLocked(const std::string& line, std::string* what);
  std::string ExitText();  // the child's exit as text, reaping it (bounded wait)

  const AgentCommand command_;
  std::mutex call_mu_;           // one request at a time on the pipe; guards what follows
  mutable std::mutex state_mu_;  // guards hello_ and lost_text_ (read by any thread at once)
  pid_t pid_ = -1;
  std::atomic<pid_t> live_pid_{-1};  // pid_ while it runs, for Shutdown (no call_mu_)
  int in_fd_ = -1, out_fd_ = -1;  // the agent's stdin (we write), stdout (we read)
  std::string buffer_;            // stdout read ahead of the current line
  int64_t next_id_ = 1;
  QJsonObject hello_;              // also under state_mu_
  bool lost_ = false;
  std::string lost_what_;
  std::string lost_text_;         // under state_mu_ only: "" or lost_what_
  // When the connection was lost (steady clock, ns); 0 lets the next call
  // reconnect at once. Atomic: AllowReconnect runs on the UI thread, which
  // never waits for call_mu_ (a call may hold it up to its deadline).
  std::atomic<int64_t> lost_at_ns_{0};

  // stderr: drained by a thread into a bounded tail.
  struct ErrTail;
  std::shared_ptr<ErrTail> err_;
  std::thread err_thread_;
};

}  // namespace rcgui
