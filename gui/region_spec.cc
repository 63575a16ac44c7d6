#include "region_spec.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>

#include "regioncache/shm_store.h"

namespace rcgui {

regioncache::StoreSpec RegionSpec::ToStoreSpec(bool read_only) const {
  regioncache::StoreSpec s;
  s.region = name.toStdString();
  s.kind = kind.toStdString();
  s.location = location.toStdString();
  for (auto it = options.begin(); it != options.end(); ++it)
    s.options[it.key().toUpper().toStdString()] = it.value().toStdString();
  if (kind == "shm") {
    s.options["CREATE"] = "false";
    s.options["ON_MISMATCH"] = "error";  // never recreate (wipe) a segment the site uses
    if (read_only) s.options["READ_ONLY"] = "true";
  }
  // A project's region comes with its store's options as the backend opens
  // them (`python -m regioncache describe`, regioncache/spec.py), REGION_PREFIX
  // of a memcached alias included: nothing is derived here.
  return s;
}

namespace {

QString OptionText(const QJsonValue& v) {
  if (v.isBool()) return v.toBool() ? "true" : "false";
  if (v.isDouble()) {
    double d = v.toDouble();
    if (d == static_cast<double>(static_cast<qint64>(d))) return QString::number(qint64(d));
    return QString::number(d, 'g', 17);
  }
  if (v.isString()) return v.toString();
  QJsonDocument d = v.isArray() ? QJsonDocument(v.toArray()) : QJsonDocument(v.toObject());
  return QString::fromUtf8(d.toJson(QJsonDocument::Compact));
}

}  // namespace

bool ParseRegionsJson(const QByteArray& json, const QString& origin, QList<RegionSpec>* out,
                      QString* error) {
  QJsonParseError perr;
  QJsonDocument doc = QJsonDocument::fromJson(json, &perr);
  if (doc.isNull()) {
    *error = QString("%1: not JSON (%2 at offset %3)").arg(origin, perr.errorString()).arg(perr.offset);
    return false;
  }
  QJsonArray regions;
  if (doc.isArray()) {
    regions = doc.array();
  } else if (doc.object().value("regions").isArray()) {
    regions = doc.object().value("regions").toArray();
  } else {
    *error = origin + ": expected {\"regions\": [...]} or a list of regions";
    return false;
  }
  QList<RegionSpec> specs;
  for (qsizetype i = 0; i < regions.size(); ++i) {
    QJsonObject o = regions[i].toObject();
    RegionSpec r;
    r.name = o.value("alias").toString(o.value("name").toString());
    r.kind = o.value("kind").toString();
    r.location = o.value("location").toString();
    r.backend = o.value("backend").toString();
    r.keyPrefix = o.value("key_prefix").toString();
    r.version = o.value("version").toInt(1);
    r.origin = origin;
    if (r.kind.isEmpty() || (r.location.isEmpty() && r.kind != "django")) {
      *error = QString("%1: region #%2 (%3) has no %4").arg(origin).arg(i + 1)
                   .arg(r.name.isEmpty() ? "unnamed" : r.name)
                   .arg(r.kind.isEmpty() ? "kind" : "location");
      return false;
    }
    if (r.name.isEmpty()) r.name = r.location;
    QJsonObject opts = o.value("options").toObject();
    for (auto it = opts.begin(); it != opts.end(); ++it) r.options[it.key().toUpper()] = OptionText(it.value());
    specs.push_back(r);
  }
  *out = specs;
  return true;
}

bool DiscoverShmRegions(QList<RegionSpec>* out, QString* error) {
  std::vector<std::string> names;
  regioncache::Status s = regioncache::ListShmRegions(&names);
  if (!s.ok()) {
    *error = QString::fromStdString(s.ToString());
    return false;
  }
  out->clear();
  for (const auto& n : names) {
    RegionSpec r;
    r.name = QString::fromStdString(n);
    r.kind = "shm";
    r.location = r.name;
    r.origin = "shared memory of this user";
    out->push_back(r);
  }
  return true;
}

bool ManualRegion(const QString& kind, const QString& location, const QString& options_text,
                  RegionSpec* out, QString* error) {
  RegionSpec r;
  r.kind = kind.trimmed();
  r.location = location.trimmed();
  r.name = r.location;
  r.origin = "added by hand";
  if (r.kind.isEmpty() || r.location.isEmpty()) {
    *error = "a region needs a kind and a location";
    return false;
  }
  static const QRegularExpression sep("[,\\n]");
  for (const QString& part : options_text.split(sep, Qt::SkipEmptyParts)) {
    QString p = part.trimmed();
    if (p.isEmpty()) continue;
    qsizetype eq = p.indexOf('=');
    if (eq <= 0) {
      *error = QString("region '%1': option '%2' is not NAME=value").arg(r.name, p);
      return false;
    }
    r.options[p.left(eq).trimmed().toUpper()] = p.mid(eq + 1).trimmed();
  }
  *out = r;
  return true;
}

}  // namespace rcgui
