#include "remote_store.h"

#include <QByteArray>
#include <QJsonArray>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QStringDecoder>

namespace rcgui {

using regioncache::Status;

QString RemoteSite::label() const {
  if (use_prefix) return prefix.isEmpty() ? QString("local agent") : prefix.join(' ');
  return "ssh " + destination;
}

QString RemoteSite::key() const { return label() + " " + settings; }

std::vector<std::string> SshPrefix(const QString& destination, const QStringList& extra_options) {
  std::vector<std::string> argv{"ssh", "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15"};
  QString dest = destination.trimmed();
  static const QRegularExpression port_re(":(\\d+)$");
  const QRegularExpressionMatch m = port_re.match(dest);
  if (m.hasMatch()) {
    argv.push_back("-p");
    argv.push_back(m.captured(1).toStdString());
    dest.chop(m.capturedLength(0));
  }
  for (const QString& o : extra_options) argv.push_back(o.toStdString());
  argv.push_back(dest.toStdString());
  argv.push_back("--");
  return argv;
}

AgentCommand RemoteSite::Command() const {
  AgentCommand c;
  if (use_prefix) {
    for (const QString& w : prefix) c.prefix.push_back(w.toStdString());
  } else {
    c.prefix = SshPrefix(destination, ssh_options);
  }
  c.agent = {(python.isEmpty() ? QString("python3") : python).toStdString(), "-m", "regioncache", "agent",
             "--settings", settings.toStdString()};
  for (const QString& d : pythonpath) {
    c.agent.push_back("--pythonpath");
    c.agent.push_back(d.toStdString());
  }
  if (agent_read_only) c.agent.push_back("--read-only");
  c.source = label();
  c.hello_timeout_ms = hello_timeout_ms;
  c.read_timeout_ms = read_timeout_ms;
  c.reconnect_interval_ms = reconnect_interval_ms;
  return c;
}

namespace {

// A key as the protocol carries it: text when it is UTF-8, else base64.
void PutKey(QJsonObject* o, std::string_view key) {
  const QByteArray bytes(key.data(), static_cast<qsizetype>(key.size()));
  QStringDecoder dec(QStringDecoder::Utf8, QStringDecoder::Flag::Stateless);
  const QString text = dec(bytes);
  if (dec.hasError())
    (*o)["key_b64"] = QString::fromLatin1(bytes.toBase64());
  else
    (*o)["key"] = text;
}

std::string KeyOf(const QJsonObject& o) {
  if (o.contains("key_b64"))
    return QByteArray::fromBase64(o.value("key_b64").toString().toLatin1()).toStdString();
  return o.value("key").toString().toUtf8().toStdString();
}

uint64_t U64(const QJsonObject& o, const char* name) {
  const qint64 v = o.value(name).toInteger();
  return v < 0 ? 0 : static_cast<uint64_t>(v);
}

}  // namespace

RemoteStore::RemoteStore(std::shared_ptr<AgentClient> client, const RegionSpec& spec)
    : Store(spec.name.toStdString(), spec.location.toStdString()),
      client_(std::move(client)),
      kind_(spec.kind.toStdString()) {}

Status RemoteStore::Ask(QJsonObject request, QJsonObject* reply, const regioncache::Progress& progress) {
  request["region"] = QString::fromStdString(region());
  return client_->Call(region(), std::move(request), reply, progress);
}

Status RemoteStore::NotHere(const char* what) const {
  return Status::InvalidArgument(Where() + what + " is not carried to a remote site (" +
                                 client_->source().toStdString() + "): the app only inspects, deletes and purges");
}

Status RemoteStore::Set(std::string_view, std::string_view, uint32_t, int64_t) { return NotHere("set"); }
Status RemoteStore::Add(std::string_view, std::string_view, uint32_t, int64_t) { return NotHere("add"); }
Status RemoteStore::Replace(std::string_view, std::string_view, uint32_t, int64_t) { return NotHere("replace"); }
Status RemoteStore::Touch(std::string_view, int64_t) { return NotHere("touch"); }
Status RemoteStore::Incr(std::string_view, int64_t, int64_t*) { return NotHere("incr"); }
Status RemoteStore::CompareAndSwap(std::string_view, std::string_view, uint32_t, const regioncache::WriteItem*) {
  return NotHere("compare-and-swap");
}

uint64_t RemoteStore::MaxItemSize() const {
  return static_cast<uint64_t>(client_->Limit("max_value_bytes", kMaxPeekBytes));
}

Status RemoteStore::Get(std::string_view key, regioncache::Value* out) { return Peek(key, out); }

Status RemoteStore::Peek(std::string_view key, regioncache::Value* out) {
  // A first read of up to kFirstPeekBytes answers most values at once and
  // tells the size of the others: a value over the cap is refused without
  // moving it, one under it is read whole by a second request (a third if
  // it grew in between).
  const qint64 cap = std::min<qint64>(kMaxPeekBytes, client_->Limit("max_value_bytes", kMaxPeekBytes));
  qint64 want = std::min<qint64>(kFirstPeekBytes, cap);
  QJsonObject reply;
  for (int round = 0;; ++round) {
    QJsonObject req{{"op", "get"}, {"max_bytes", want}};
    PutKey(&req, key);
    Status s = Ask(req, &reply);
    if (!s.ok()) return s;
    if (!reply.value("found").toBool()) return Status::NotFound();
    if (!reply.value("truncated").toBool()) break;
    const qint64 size = reply.value("size").toInteger();
    if (size > cap || round == 2)
      return Status::TooLarge(Where() + "the value of " + std::string(key) + " is " + std::to_string(size) +
                              " bytes, over the " + std::to_string(cap >> 20) +
                              " MiB the app reads from a remote site");
    want = size;
  }
  out->data = QByteArray::fromBase64(reply.value("data_b64").toString().toLatin1()).toStdString();
  out->at = nullptr;
  out->len = 0;
  out->flags = static_cast<uint32_t>(U64(reply, "flags"));
  out->expires_ms = reply.value("expires_ms").toInteger();
  return Status::OK();
}

Status RemoteStore::List(const regioncache::ListOptions& opts, regioncache::ListPage* page) {
  const qint64 max_page = client_->Limit("max_page", 20000);
  QJsonObject req{{"op", "list"},
                  {"cursor", QString::fromStdString(opts.cursor)},
                  {"glob", QString::fromStdString(opts.glob)},
                  {"limit", std::clamp<qint64>(static_cast<qint64>(opts.limit), 1, max_page > 0 ? max_page : 20000)},
                  {"include_expired", opts.include_expired}};
  QJsonObject reply;
  Status s = Ask(req, &reply);
  if (!s.ok()) return s;
  page->entries.clear();
  for (const QJsonValue& v : reply.value("entries").toArray()) {
    const QJsonObject e = v.toObject();
    regioncache::EntryInfo info;
    info.key = KeyOf(e);
    info.value_size = U64(e, "size");
    info.expires_ms = e.value("expires_ms").toInteger();
    info.stored_ms = e.value("stored_ms").toInteger();
    info.accessed_ms = e.value("accessed_ms").toInteger();
    info.flags = static_cast<uint32_t>(U64(e, "flags"));
    page->entries.push_back(std::move(info));
  }
  page->next_cursor = reply.value("next_cursor").toString().toStdString();
  page->scanned = U64(reply, "scanned");
  return Status::OK();
}

Status RemoteStore::GetStats(regioncache::Stats* out) {
  QJsonObject reply;
  Status s = Ask({{"op", "stats"}}, &reply);
  if (!s.ok()) return s;
  const QJsonObject st = reply.value("stats").toObject();
  *out = regioncache::Stats();
  out->entries = U64(st, "entries");
  out->bytes_used = U64(st, "bytes_used");
  out->capacity = U64(st, "capacity");
  out->hits = U64(st, "hits");
  out->misses = U64(st, "misses");
  out->sets = U64(st, "sets");
  out->evictions = U64(st, "evictions");
  out->expirations = U64(st, "expirations");
  out->errors = U64(st, "errors");
  out->stampede_waits = U64(st, "stampede_waits");
  // Each figure's scope as the agent's store reports it ("process" there is
  // the agent's own process: events the site's workers counted per process
  // are not in it).
  const QJsonObject scope = st.value("scope").toObject();
  auto scope_of = [&](const char* figure, regioncache::Scope fallback) {
    const std::string name = scope.value(figure).toString().toStdString();
    for (auto each : {regioncache::Scope::kRegion, regioncache::Scope::kProcess, regioncache::Scope::kServers})
      if (name == regioncache::ScopeName(each)) return each;  // the names the agent's stats() wrote
    return fallback;
  };
  out->contents_scope = scope_of("entries", out->contents_scope);
  out->capacity_scope = scope_of("capacity", out->capacity_scope);
  out->counters_scope = scope_of("hits", out->counters_scope);
  out->events_scope = scope_of("errors", out->events_scope);
  for (const QJsonValue& v : st.value("extra").toArray()) {
    const QJsonArray pair = v.toArray();
    out->extra.emplace_back(pair.at(0).toString().toStdString(), pair.at(1).toString().toStdString());
  }
  for (const QJsonValue& v : st.value("servers").toArray()) {
    const QJsonObject o = v.toObject();
    regioncache::ServerHealth h;
    h.address = o.value("address").toString().toStdString();
    h.up = o.value("up").toBool();
    h.marked_failed = o.value("marked_failed").toBool();
    h.error = o.value("error").toString().toStdString();
    h.entries = U64(o, "entries");
    h.bytes_used = U64(o, "bytes_used");
    out->servers.push_back(std::move(h));
  }
  return Status::OK();
}

Status RemoteStore::Delete(std::string_view key) {
  uint64_t deleted = 0;
  std::string_view one[] = {key};
  Status s = DeleteMany(one, &deleted);
  if (s.ok() && deleted == 0) return Status::NotFound();
  return s;
}

Status RemoteStore::DeleteMany(std::span<const std::string_view> keys, uint64_t* deleted) {
  *deleted = 0;
  const size_t batch = static_cast<size_t>(std::max<qint64>(1, client_->Limit("max_keys", 10000)));
  for (size_t at = 0; at < keys.size(); at += batch) {
    QJsonArray text, b64;
    for (size_t i = at; i < std::min(keys.size(), at + batch); ++i) {
      QJsonObject one;
      PutKey(&one, keys[i]);
      if (one.contains("key"))
        text.append(one.value("key"));
      else
        b64.append(one.value("key_b64"));
    }
    QJsonObject req{{"op", "delete"}};
    if (!text.isEmpty()) req["keys"] = text;
    if (!b64.isEmpty()) req["keys_b64"] = b64;
    QJsonObject reply;
    Status s = Ask(req, &reply);
    if (!s.ok()) return s;
    *deleted += U64(reply, "deleted");
  }
  return Status::OK();
}

Status RemoteStore::PurgeMatching(std::string_view glob, uint64_t* removed, const regioncache::Progress& progress) {
  *removed = 0;
  QJsonObject reply;
  Status s = Ask({{"op", "purge"}, {"glob", QString::fromUtf8(glob.data(), static_cast<qsizetype>(glob.size()))}},
                 &reply, progress);
  *removed = U64(reply, "removed");  // a cancelled purge says what it removed too
  return s;
}

Status RemoteStore::PurgeExpired(uint64_t* removed) {
  *removed = 0;
  QJsonObject reply;
  Status s = Ask({{"op", "purge_expired"}}, &reply);
  *removed = U64(reply, "removed");
  return s;
}

Status RemoteStore::Clear() {
  QJsonObject reply;
  return Ask({{"op", "clear"}}, &reply);
}

bool FetchRemoteRegions(const RemoteSite& site, const std::shared_ptr<AgentClient>& client,
                        QList<RegionSpec>* out, QString* error) {
  QJsonObject reply;
  Status s = client->Call(std::string(), {{"op", "regions"}}, &reply);
  if (!s.ok()) {
    *error = QString::fromStdString(s.message());
    return false;
  }
  const QString origin = QString("%1 (%2)").arg(site.label(), site.settings);
  QList<RegionSpec> specs;
  if (!ParseRegionsJson(QJsonDocument(QJsonObject{{"regions", reply.value("regions")}}).toJson(), origin, &specs,
                        error))
    return false;
  for (RegionSpec& spec : specs) {
    spec.remote = site.key();
    spec.agent = client;
  }
  *out = specs;
  return true;
}

}  // namespace rcgui
