// A Remote site: a Django project on another host, reached by starting the
// inspection agent there through ssh (or any command prefix), and the
// regioncache::Store each of its regions is to the app: every inspection
// call becomes one request to the agent (docs/AGENT.md), so the app's views
// work on remote regions as on local ones.
#pragma once

#include <QList>
#include <QString>
#include <QStringList>
#include <memory>

#include "agent_client.h"
#include "region_spec.h"
#include "regioncache/store.h"

namespace rcgui {

struct RemoteSite {
  QString destination;           // ssh destination: user@host, user@host:port, or a host alias
  QString settings;              // the site's Django settings module
  QString python = "python3";    // the remote interpreter that has Django and regioncache
  QStringList pythonpath;        // directories the agent puts first on sys.path
  QStringList ssh_options;       // extra words for ssh ("-J", "bastion", "-i", "key")
  bool agent_read_only = false;  // start the agent with --read-only
  // The transport as a command prefix instead of ssh (tests, the demo):
  // `sh -c` runs the agent as a local child quoted as ssh would; an empty
  // prefix with use_prefix runs the agent's words directly.
  bool use_prefix = false;
  QStringList prefix;

  int hello_timeout_ms = 60000;
  int read_timeout_ms = 60000;
  int reconnect_interval_ms = 2000;

  // "ssh deploy@web1" (or the prefix), for messages and the region list.
  QString label() const;
  // label() and the settings module: a remote region's place in Identity().
  QString key() const;
  AgentCommand Command() const;
};

// The ssh prefix for a destination: ssh -T -o BatchMode=yes
// -o ServerAliveInterval=15 [-p PORT] [extra options] DEST --. A trailing
// ":PORT" of digits is the port.
std::vector<std::string> SshPrefix(const QString& destination, const QStringList& extra_options);

// A region of a remote site, as the app's views use it. kind() is the
// remote region's own kind. Only inspection and the app's writes (delete,
// purge, purge expired, clear) are carried; the cache contract's writes
// (Set, Add, Replace, Touch, Incr, CompareAndSwap) answer InvalidArgument:
// the app never makes them.
class RemoteStore : public regioncache::Store {
 public:
  // Values over this are refused by Peek (the app reads no more at once).
  static constexpr int64_t kMaxPeekBytes = int64_t{64} << 20;
  // What Peek asks for first; a bigger value costs a second request.
  static constexpr int64_t kFirstPeekBytes = int64_t{1} << 20;

  RemoteStore(std::shared_ptr<AgentClient> client, const RegionSpec& spec);

  regioncache::Status Get(std::string_view key, regioncache::Value* out) override;
  regioncache::Status Set(std::string_view, std::string_view, uint32_t, int64_t) override;
  regioncache::Status Add(std::string_view, std::string_view, uint32_t, int64_t) override;
  regioncache::Status Replace(std::string_view, std::string_view, uint32_t, int64_t) override;
  regioncache::Status Touch(std::string_view, int64_t) override;
  regioncache::Status Delete(std::string_view key) override;
  regioncache::Status Incr(std::string_view, int64_t, int64_t*) override;
  regioncache::Status Clear() override;
  regioncache::Status CompareAndSwap(std::string_view, std::string_view, uint32_t,
                                     const regioncache::WriteItem*) override;
  regioncache::Status DeleteMany(std::span<const std::string_view> keys, uint64_t* deleted) override;

  regioncache::Status Peek(std::string_view key, regioncache::Value* out) override;
  regioncache::Status List(const regioncache::ListOptions& opts, regioncache::ListPage* page) override;
  regioncache::Status GetStats(regioncache::Stats* out) override;
  regioncache::Status PurgeExpired(uint64_t* removed) override;
  regioncache::Status PurgeMatching(std::string_view glob, uint64_t* removed,
                                    const regioncache::Progress& progress = {}) override;

  std::string_view kind() const override { return kind_; }
  uint64_t MaxItemSize() const override;

 private:
  regioncache::Status Ask(QJsonObject request, QJsonObject* reply,
                          const regioncache::Progress& progress = {});
  regioncache::Status NotHere(const char* what) const;

  std::shared_ptr<AgentClient> client_;
  const std::string kind_;
};

// Asks the agent for the site's regions (`regions`), as specs that open
// through it: origin, remote and agent set. False with *error naming the
// source and what failed.
bool FetchRemoteRegions(const RemoteSite& site, const std::shared_ptr<AgentClient>& client,
                        QList<RegionSpec>* out, QString* error);

}  // namespace rcgui
