#include "test_support.h"

#include <QCoreApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QJsonDocument>
#include <QProcess>
#include <QProcessEnvironment>
#include <QTimer>
#include <atomic>

#include <map>
#include <memory>

#include "key_loader.h"
#include "run_events.h"
#include "regioncache/shm_store.h"
#include "support/test_support.h"  // the C++ tests' harness: ports, memcached servers

namespace rcgui::testing {

QString PythonExe() {
  QString env = qEnvironmentVariable("REGIONCACHE_TEST_PYTHON");
  return env.isEmpty() ? QString(REGIONCACHE_TEST_PYTHON) : env;
}

QString TestPythonPath() {
  const QString old = qEnvironmentVariable("PYTHONPATH");
  const QString pkg = QString(REGIONCACHE_SOURCE_DIR) + "/django_backend";
  // The native module built in place lands beside the package's Python files;
  // without it the source tree's package would not import, and the
  // interpreter's installed regioncache (pip install .) is the one to test.
  const QStringList built = QDir(pkg + "/regioncache").entryList({"_native*.so"}, QDir::Files);
  if (built.isEmpty() || old.split(':').contains(pkg)) return old;
  return old.isEmpty() ? pkg : pkg + ":" + old;
}

bool RunPython(const QStringList& args, QByteArray* out, QString* error, int timeout_ms) {
  QProcess p;
  QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
  env.insert("PYTHONPATH", TestPythonPath());
  p.setProcessEnvironment(env);
  p.start(PythonExe(), args);
  const QString cmd = PythonExe() + " " + args.join(' ').left(300);
  if (!p.waitForStarted(10000)) {
    *error = "cannot start " + cmd + ": " + p.errorString();
    return false;
  }
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    p.waitForFinished();
    *error = cmd + ": timed out";
    return false;
  }
  *out = p.readAllStandardOutput();
  if (p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0) {
    *error = QString("%1: exit %2: %3").arg(cmd).arg(p.exitCode()).arg(QString::fromUtf8(p.readAllStandardError()));
    return false;
  }
  return true;
}

QByteArray DjangoRegion(const QJsonObject& conf, const QStringList& cmd_args, QString* error) {
  const QString script = QString(REGIONCACHE_SOURCE_DIR) + "/gui/tests/support/django_region.py";
  QByteArray out;
  QStringList args{script, QString::fromUtf8(QJsonDocument(conf).toJson(QJsonDocument::Compact))};
  args << cmd_args;
  if (!RunPython(args, &out, error)) return {};
  return out;
}

QString UniqueName(const QString& tag) {
  static std::atomic<int> n{0};
  return QString("guitest-%1-%2-%3").arg(QCoreApplication::applicationPid()).arg(tag).arg(n++);
}

namespace {

// memcached servers started by the tests, by LOCATION; each region gets a
// server of its own, so fixtures of different tests never share keys.
std::map<QString, std::unique_ptr<regioncache::testing::MemcachedServer>>& Servers() {
  static std::map<QString, std::unique_ptr<regioncache::testing::MemcachedServer>> servers;
  return servers;
}

QString StartMemcached() {
  auto server = std::make_unique<regioncache::testing::MemcachedServer>(64);
  // A server that does not start is a failure, never a skip: the LOCATION
  // returned then names the problem, and the first use of it fails the test
  // (without aborting, so the other regions of the run are still removed).
  if (!server->up()) {
    qWarning("%s", server->error().c_str());
    return "memcached-did-not-start";
  }
  const QString location = QString::fromStdString(server->location());
  Servers()[location] = std::move(server);
  return location;
}

void StopMemcached(const QString& location) { Servers().erase(location); }

}  // namespace

QList<KindUnderTest> AllKinds() {
  QList<KindUnderTest> kinds;
  kinds.push_back({"shm",
                   [](const QString& name) {
                     return QJsonObject{{"BACKEND", "regioncache.SharedMemoryCache"},
                                        {"LOCATION", name},
                                        {"OPTIONS", QJsonObject{{"SIZE", "8MB"}}}};
                   },
                   [](const QString& name) { return QJsonObject{{"LOCATION", name}}; },
                   [](const QJsonObject& conf) {
                     regioncache::RemoveShmRegion(conf["LOCATION"].toString().toStdString());
                   }});
  kinds.push_back({"memcached",
                   [](const QString&) {
                     return QJsonObject{{"BACKEND", "regioncache.MemcachedCache"},
                                        {"LOCATION", StartMemcached()}};
                   },
                   [](const QString&) {
                     return QJsonObject{{"BACKEND", "regioncache.MemcachedCache"},
                                        {"LOCATION", QString("127.0.0.1:%1").arg(regioncache::testing::FreePort())},
                                        {"OPTIONS", QJsonObject{{"CONNECT_TIMEOUT", 0.2}, {"POLL_TIMEOUT", 0.2}}}};
                   },
                   [](const QJsonObject& conf) { StopMemcached(conf["LOCATION"].toString()); }});
  kinds.push_back({"file",
                   [](const QString& name) {
                     return QJsonObject{{"BACKEND", "regioncache.FileCache"},
                                        {"LOCATION", QDir::temp().filePath("regioncache-gui-" + name)},
                                        {"OPTIONS", QJsonObject{{"MAX_SIZE", "64MB"}}}};
                   },
                   [](const QString& name) {
                     // Under a regular file: no directory can be made there.
                     return QJsonObject{{"BACKEND", "regioncache.FileCache"},
                                        {"LOCATION", "/dev/null/regioncache-" + name}};
                   },
                   [](const QJsonObject& conf) {
                     QDir(conf["LOCATION"].toString()).removeRecursively();
                   }});
  return kinds;
}

RegionSpec SpecFromConf(const QString& alias, const QString& kind, const QJsonObject& conf) {
  RegionSpec s;
  s.name = alias;
  s.kind = kind;
  s.location = conf["LOCATION"].toString();
  s.backend = conf["BACKEND"].toString();
  s.origin = "test";
  const QJsonObject opts = conf["OPTIONS"].toObject();
  for (auto it = opts.begin(); it != opts.end(); ++it) s.options[it.key()] = it.value().toVariant().toString();
  return s;
}

bool ListInto(KeyTableModel* model, const RegionPtr& region, const QString& glob, QString* error,
              int timeout_ms) {
  KeyLoader loader;
  QObject::connect(&loader, &KeyLoader::batchReady, model, &KeyTableModel::append);
  bool done = false, ok = false;
  QObject::connect(&loader, &KeyLoader::finished, [&](bool success, bool, const QString& why, quint64) {
    done = true;
    ok = success;
    *error = why;
  });
  loader.start(region, glob);
  if (!WaitUntil([&] { return done; }, timeout_ms)) {
    loader.cancel();
    WaitUntil([&] { return done; }, timeout_ms);
    *error = QString("listing %1 of region '%2' did not finish in %3 ms")
                 .arg(glob, region->spec().name).arg(timeout_ms);
    return false;
  }
  if (!ok && error->isEmpty()) *error = QString("listing %1 of region '%2' failed").arg(glob, region->spec().name);
  return ok;
}

bool WaitUntil(const std::function<bool()>& pred, int timeout_ms) {
  return RunEventsUntil(pred, timeout_ms, 5);
}

}  // namespace rcgui::testing
