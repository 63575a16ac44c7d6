#include "django_describer.h"

namespace rcgui {

DjangoDescriber::DjangoDescriber(QObject* parent) : QObject(parent) {
  timeout_.setSingleShot(true);
  connect(&timeout_, &QTimer::timeout, this, [this] {
    if (!process_) return;
    process_->kill();
    Finish(false, {}, QString("%1: no answer within %2 s; stopped it").arg(command_).arg(timeout_.interval() / 1000));
  });
}

DjangoDescriber::~DjangoDescriber() {
  if (process_) {
    process_->disconnect(this);
    process_->kill();
    process_->waitForFinished(2000);
  }
}

void DjangoDescriber::Start(const DjangoProject& project, int timeout_ms) {
  if (process_) {
    process_->disconnect(this);
    process_->kill();
    process_->waitForFinished(2000);
    process_->deleteLater();
    process_ = nullptr;
  }
  project_ = project;
  QStringList args{"-m", "regioncache", "describe", "--settings", project.settings};
  for (const QString& p : project.pythonpath) args << "--pythonpath" << p;
  command_ = project.python + " " + args.join(' ');
  process_ = new QProcess(this);
  QProcess* proc = process_;
  connect(proc, &QProcess::errorOccurred, this, [this, proc](QProcess::ProcessError e) {
    if (proc != process_ || e != QProcess::FailedToStart) return;
    Finish(false, {}, QString("cannot run %1: %2").arg(project_.python, proc->errorString()));
  });
  connect(proc, &QProcess::finished, this, [this, proc](int code, QProcess::ExitStatus status) {
    if (proc != process_) return;
    const QByteArray out = proc->readAllStandardOutput();
    const QString err = QString::fromUtf8(proc->readAllStandardError()).trimmed();
    if (status != QProcess::NormalExit || code != 0) {
      Finish(false, {}, QString("%1 failed (exit %2): %3").arg(command_).arg(code)
                            .arg(err.isEmpty() ? QString("no message") : err.right(2000)));
      return;
    }
    QList<RegionSpec> regions;
    QString error;
    if (!ParseRegionsJson(out, "Django settings " + project_.settings, &regions, &error)) {
      Finish(false, {}, error);
      return;
    }
    Finish(true, regions, QString());
  });
  timeout_.start(timeout_ms);
  proc->start(project.python, args);
}

void DjangoDescriber::Finish(bool ok, const QList<RegionSpec>& regions, const QString& error) {
  timeout_.stop();
  if (process_) {
    process_->deleteLater();
    process_ = nullptr;
  }
  emit done(ok, regions, error);
}

}  // namespace rcgui
