#include "region.h"

#include <QStringList>

#include <atomic>

#include "regioncache/status.h"
#include "remote_store.h"

namespace rcgui {

namespace {
std::atomic<bool> g_read_only{false};
}  // namespace

void SetStoresReadOnly(bool on) { g_read_only.store(on); }
bool StoresReadOnly() { return g_read_only.load(); }

std::shared_ptr<regioncache::Store> Region::acquire(regioncache::Status* error) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool read_only = StoresReadOnly();
  if (store_ && store_read_only_ != read_only) store_.reset();  // the mode changed: reopen
  if (store_) {
    *error = regioncache::Status::OK();
    return store_;
  }
  if (spec_.kind == "django") {
    *error = regioncache::Status::InvalidArgument(regioncache::RegionMessage(
        spec_.name.toStdString(),
        "backend " + spec_.backend.toStdString() + " is not a regioncache store; the app cannot open it"));
    return nullptr;
  }
  if (spec_.agent) {
    // A remote region: the agent opens the store on its host; a lost
    // connection answers on each call (AgentClient), not here.
    store_ = std::make_shared<RemoteStore>(spec_.agent, spec_);
    store_read_only_ = read_only;
    *error = regioncache::Status::OK();
    return store_;
  }
  std::unique_ptr<regioncache::Store> s;
  *error = regioncache::OpenStore(spec_.ToStoreSpec(read_only), &s);
  if (!error->ok()) return nullptr;
  store_ = std::move(s);
  store_read_only_ = read_only;
  return store_;
}

void Region::forgetStore() {
  std::lock_guard<std::mutex> lock(mu_);
  store_.reset();
}

QString StatusText(const Region& r, const regioncache::Status& s) {
  QString text = QString::fromStdString(s.ToString());
  // A region that is not there yet is the site's to create, not ours.
  if (s.IsNotFound() && r.spec().kind == "shm")
    text += " (the app opens existing regions only; it appears once the site has used it)";
  if (!s.message().empty() && s.message().find(r.spec().name.toStdString()) != std::string::npos)
    return text;
  return QString("region '%1' (%2 %3): %4").arg(r.spec().name, r.spec().kind, r.spec().location, text);
}

QString DownServersText(const Region& r, const regioncache::Stats& stats) {
  QStringList down;
  for (const regioncache::ServerHealth& server : stats.servers)
    if (!server.up)
      down << QString::fromStdString(server.address) + " down: " + QString::fromStdString(server.error);
  if (down.isEmpty()) return {};
  return QString("region '%1' (%2 %3): %4 of its servers down: %5")
      .arg(r.spec().name, r.spec().kind, r.spec().location)
      .arg(down.size())
      .arg(down.join("; "));
}

}  // namespace rcgui
