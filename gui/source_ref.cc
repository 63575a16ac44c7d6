#include "source_ref.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

namespace rcgui {

QString SourceRef::label() const {
  switch (type) {
    case Type::kDjango:
      return QString("Django %1%2").arg(django.settings,
                                        django.pythonpath.isEmpty() ? QString()
                                                                    : " (" + django.pythonpath.join(", ") + ")");
    case Type::kJsonFile: return "JSON " + path;
    case Type::kManual: return QString("%1 %2").arg(manual.kind, manual.location);
    case Type::kRemote: return QString("Remote %1 %2").arg(remote.label(), remote.settings);
  }
  return {};
}

QString SourceRef::encode() const {
  QJsonObject o;
  switch (type) {
    case Type::kDjango:
      o["type"] = "django";
      o["python"] = django.python;
      o["settings"] = django.settings;
      o["pythonpath"] = QJsonArray::fromStringList(django.pythonpath);
      break;
    case Type::kJsonFile:
      o["type"] = "json";
      o["path"] = path;
      break;
    case Type::kManual: {
      o["type"] = "manual";
      o["kind"] = manual.kind;
      o["location"] = manual.location;
      QJsonObject opts;
      for (auto it = manual.options.begin(); it != manual.options.end(); ++it) opts[it.key()] = it.value();
      o["options"] = opts;
      break;
    }
    case Type::kRemote:
      o["type"] = "remote";
      o["destination"] = remote.destination;
      o["settings"] = remote.settings;
      o["python"] = remote.python;
      o["pythonpath"] = QJsonArray::fromStringList(remote.pythonpath);
      o["ssh_options"] = QJsonArray::fromStringList(remote.ssh_options);
      o["read_only"] = remote.agent_read_only;
      if (remote.use_prefix) o["prefix"] = QJsonArray::fromStringList(remote.prefix);
      break;
  }
  return QString::fromUtf8(QJsonDocument(o).toJson(QJsonDocument::Compact));
}

bool SourceRef::decode(const QString& text, SourceRef* out) {
  QJsonObject o = QJsonDocument::fromJson(text.toUtf8()).object();
  const QString type = o.value("type").toString();
  SourceRef r;
  if (type == "django") {
    r.type = Type::kDjango;
    r.django.python = o.value("python").toString("python3");
    r.django.settings = o.value("settings").toString();
    for (const auto& v : o.value("pythonpath").toArray()) r.django.pythonpath << v.toString();
    if (r.django.settings.isEmpty()) return false;
  } else if (type == "json") {
    r.type = Type::kJsonFile;
    r.path = o.value("path").toString();
    if (r.path.isEmpty()) return false;
  } else if (type == "manual") {
    r.type = Type::kManual;
    r.manual.kind = o.value("kind").toString();
    r.manual.location = o.value("location").toString();
    r.manual.name = r.manual.location;
    r.manual.origin = "added by hand";
    QJsonObject opts = o.value("options").toObject();
    for (auto it = opts.begin(); it != opts.end(); ++it) r.manual.options[it.key()] = it.value().toString();
    if (r.manual.kind.isEmpty() || r.manual.location.isEmpty()) return false;
  } else if (type == "remote") {
    r.type = Type::kRemote;
    r.remote.destination = o.value("destination").toString();
    r.remote.settings = o.value("settings").toString();
    r.remote.python = o.value("python").toString("python3");
    for (const auto& v : o.value("pythonpath").toArray()) r.remote.pythonpath << v.toString();
    for (const auto& v : o.value("ssh_options").toArray()) r.remote.ssh_options << v.toString();
    r.remote.agent_read_only = o.value("read_only").toBool();
    r.remote.use_prefix = o.value("prefix").isArray();
    for (const auto& v : o.value("prefix").toArray()) r.remote.prefix << v.toString();
    if (r.remote.settings.isEmpty() || (r.remote.destination.isEmpty() && !r.remote.use_prefix)) return false;
  } else {
    return false;
  }
  *out = r;
  return true;
}

}  // namespace rcgui
