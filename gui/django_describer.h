// Asks a Django project for its cache regions: runs
//   <python> -m regioncache describe --settings MODULE [--pythonpath DIR]...
// as a child process (QProcess: asynchronous, the UI never waits on it) and
// parses its JSON. Failures name the command and what it printed.
#pragma once

#include <QList>
#include <QObject>
#include <QProcess>
#include <QStringList>
#include <QTimer>

#include "region_spec.h"

namespace rcgui {

struct DjangoProject {
  QString python = "python3";
  QString settings;          // e.g. "demo.settings"
  QStringList pythonpath;    // directories put first on sys.path
};

class DjangoDescriber : public QObject {
  Q_OBJECT

 public:
  explicit DjangoDescriber(QObject* parent = nullptr);
  ~DjangoDescriber() override;

  // Starts describing project; a describe under way is abandoned.
  void Start(const DjangoProject& project, int timeout_ms = 60000);
  bool running() const { return process_ && process_->state() != QProcess::NotRunning; }

 signals:
  void done(bool ok, const QList<rcgui::RegionSpec>& regions, const QString& error);

 private:
  void Finish(bool ok, const QList<RegionSpec>& regions, const QString& error);

  DjangoProject project_;
  QProcess* process_ = nullptr;
  QTimer timeout_;
  QString command_;
};

}  // namespace rcgui
