#include "test_support.h"

#include <QCoreApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QJsonDocument>
#include <QProcess>
#include <QProcessEnvironment>
#include <QTimer>
#include <atomic>

#include "regioncache/shm_store.h"

namespace rcgui::testing {

QString PythonExe() {
  QString env = qEnvironmentVariable("REGIONCACHE_TEST_PYTHON");
  return env.isEmpty() ? QString(REGIONCACHE_TEST_PYTHON) : env;
}

bool RunPython(const QStringList& args, QByteArray* out, QString* error, int timeout_ms) {
  QProcess p;
  QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
  const QString pkg = QString(REGIONCACHE_SOURCE_DIR) + "/django_backend";
  const QString old = env.value("PYTHONPATH");
  env.insert("PYTHONPATH", old.isEmpty() ? pkg : pkg + ":" + old);
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

QList<KindUnderTest> AllKinds() {
  QList<KindUnderTest> kinds;
  kinds.push_back({"shm",
                   [](const QString& name) {
                     return QJsonObject{{"BACKEND", "regioncache.SharedMemoryCache"},
                                        {"LOCATION", name},
                                        {"OPTIONS", QJsonObject{{"SIZE", "8MB"}}}};
                   },
                   [](const QJsonObject& conf) {
                     regioncache::RemoveShmRegion(conf["LOCATION"].toString().toStdString());
                   }});
  // When the file and memcached stores land, each adds an entry here: a
  // temporary directory (removed by cleanup) or a memcached server started on
  // a free 127.0.0.1 port, with its BACKEND and OPTIONS.
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

bool WaitUntil(const std::function<bool()>& pred, int timeout_ms) {
  QElapsedTimer t;
  t.start();
  while (!pred()) {
    if (t.elapsed() > timeout_ms) return false;
    QEventLoop loop;
    QTimer::singleShot(5, &loop, &QEventLoop::quit);
    loop.exec();
  }
  return true;
}

}  // namespace rcgui::testing
