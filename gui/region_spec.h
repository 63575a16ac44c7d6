// What the app knows about a region before opening it: where it came from
// (a Django project, a JSON file, typed by hand, found in /dev/shm) and the
// StoreSpec that opens it. Nothing here touches a store.
#pragma once

#include <QList>
#include <QMap>
#include <QString>
#include <memory>

#include "regioncache/store.h"

namespace rcgui {

class AgentClient;

struct RegionSpec {
  QString name;       // CACHES alias, or the region name for shm regions found on disk
  QString kind;       // "shm", "file", "memcached"; "django" for a backend we cannot open
  QString location;
  QMap<QString, QString> options;  // upper-case names, values as text
  QString backend;    // the Django BACKEND, when the region came from a project
  QString keyPrefix;  // Django KEY_PREFIX (shown; keys in the store already carry it)
  int version = 1;
  QString origin;     // where the spec came from, for messages ("demo.settings", "regions.json")
  // A region of a remote site (remote_store.h): the site's key ("ssh
  // deploy@web1 mysite.settings") and the connection to its agent, which
  // every region of that site shares. Empty and null for a local region.
  QString remote;
  std::shared_ptr<AgentClient> agent;

  // The spec the core library opens. The app browses, it never creates: for
  // shared memory it asks to attach only (CREATE=false), so a typo in a
  // region name is an error instead of a new 64 MB segment, and a segment
  // of another size or layout is reported, never recreated. read_only (the
  // app's read-only mode) opens shared memory with READ_ONLY=true: mapped
  // read-only, so the store reports damage and never repairs or writes.
  regioncache::StoreSpec ToStoreSpec(bool read_only = false) const;

  // "shm:demo-pages" — identity of a region across sources (no duplicates);
  // a remote region's starts with its site, so that it never merges with a
  // local region of the same name: "ssh deploy@web1 mysite.settings|shm:demo-pages".
  QString Identity() const { return (remote.isEmpty() ? QString() : remote + "|") + kind + ":" + location; }
};

// Parses the output of `python -m regioncache describe` (each region's store
// spec as regioncache.spec.store_spec makes it, the store's OPTIONS as text)
// or a JSON file in the same format: {"regions": [{alias, kind, backend,
// location, options, key_prefix, version}, ...]}. A top-level list of such objects is accepted
// too. On failure returns false and sets *error naming origin and the fault.
bool ParseRegionsJson(const QByteArray& json, const QString& origin, QList<RegionSpec>* out,
                      QString* error);

// The current user's shared-memory regions, as specs that attach to them.
bool DiscoverShmRegions(QList<RegionSpec>* out, QString* error);

// A spec typed by hand. options is "NAME=value" pairs separated by commas or
// new lines. False with *error when the text is not of that form.
bool ManualRegion(const QString& kind, const QString& location, const QString& options_text,
                  RegionSpec* out, QString* error);

}  // namespace rcgui
