#include "source_dialogs.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProcess>
#include <functional>

#include "regioncache/store.h"

namespace rcgui {

namespace {

// The form both dialogs lay out: the title, then the rows add() puts in, then
// OK and Cancel.
void DialogForm(QDialog* dialog, const QString& title, const std::function<void(QFormLayout*)>& add) {
  dialog->setWindowTitle(title);
  auto* form = new QFormLayout(dialog);
  add(form);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel);
  QObject::connect(buttons, &QDialogButtonBox::accepted, dialog, &QDialog::accept);
  QObject::connect(buttons, &QDialogButtonBox::rejected, dialog, &QDialog::reject);
  form->addRow(buttons);
}

}  // namespace

DjangoProjectDialog::DjangoProjectDialog(const DjangoProject& initial, QWidget* parent) : QDialog(parent) {
  python_ = new QLineEdit(initial.python);
  settings_ = new QLineEdit(initial.settings);
  settings_->setPlaceholderText("mysite.settings");
  pythonpath_ = new QLineEdit(initial.pythonpath.join(QDir::listSeparator()));
  pythonpath_->setPlaceholderText("directory that holds the settings package (optional)");
  DialogForm(this, "Open a Django project", [this](QFormLayout* form) {
    form->addRow(new QLabel("The app runs  python -m regioncache describe  to read the project's CACHES."));
    form->addRow("Python", python_);
    form->addRow("Settings module", settings_);
    form->addRow("Python path", pythonpath_);
  });
}

DjangoProject DjangoProjectDialog::project() const {
  DjangoProject p;
  p.python = python_->text().trimmed().isEmpty() ? QString("python3") : python_->text().trimmed();
  p.settings = settings_->text().trimmed();
  p.pythonpath = pythonpath_->text().split(QDir::listSeparator(), Qt::SkipEmptyParts);
  return p;
}

ManualRegionDialog::ManualRegionDialog(QWidget* parent) : QDialog(parent) {
  kind_ = new QComboBox;
  for (const auto& k : regioncache::StoreKinds()) kind_->addItem(QString::fromStdString(k));
  location_ = new QLineEdit;
  location_->setPlaceholderText("shm: region name · file: directory · memcached: host:port;host:port");
  options_ = new QPlainTextEdit;
  options_->setPlaceholderText("NAME=value, one per line (e.g. SIZE=64MB)");
  options_->setMaximumHeight(90);
  DialogForm(this, "Add a region by hand", [this](QFormLayout* form) {
    form->addRow("Kind", kind_);
    form->addRow("Location", location_);
    form->addRow("Options", options_);
  });
}

bool ManualRegionDialog::spec(RegionSpec* out, QString* error) const {
  return ManualRegion(kind_->currentText(), location_->text(), options_->toPlainText(), out, error);
}

RemoteSiteDialog::RemoteSiteDialog(const RemoteSite& initial, QWidget* parent)
    : QDialog(parent), initial_(initial) {
  destination_ = new QLineEdit(initial.destination);
  destination_->setPlaceholderText("deploy@web1, deploy@web1:2222 or a host alias of ~/.ssh/config");
  settings_ = new QLineEdit(initial.settings);
  settings_->setPlaceholderText("mysite.settings");
  python_ = new QLineEdit(initial.python);
  python_->setPlaceholderText("python3 (e.g. /srv/venv/bin/python)");
  pythonpath_ = new QLineEdit(initial.pythonpath.join(':'));
  pythonpath_->setPlaceholderText("directories on the remote host, separated by ':' (optional)");
  ssh_options_ = new QLineEdit(initial.ssh_options.join(' '));
  ssh_options_->setPlaceholderText("extra ssh options, e.g. -J bastion -i ~/.ssh/ops (optional)");
  read_only_ = new QCheckBox("Start the agent read-only (it refuses every write)");
  read_only_->setChecked(initial.agent_read_only);
  DialogForm(this, "Open a remote site", [this](QFormLayout* form) {
    form->addRow(new QLabel("The app runs  ssh DESTINATION -- python -m regioncache agent --settings MODULE\n"
                            "(OpenSSH's keys, ~/.ssh/config and jump hosts apply; no password prompt)."));
    form->addRow("SSH destination", destination_);
    form->addRow("Settings module", settings_);
    form->addRow("Remote python", python_);
    form->addRow("Python path", pythonpath_);
    form->addRow("SSH options", ssh_options_);
    form->addRow(read_only_);
  });
}

RemoteSite RemoteSiteDialog::site() const {
  RemoteSite s = initial_;
  s.use_prefix = false;  // the dialog is the ssh transport
  s.prefix.clear();
  s.destination = destination_->text().trimmed();
  s.settings = settings_->text().trimmed();
  s.python = python_->text().trimmed().isEmpty() ? QString("python3") : python_->text().trimmed();
  s.pythonpath = pythonpath_->text().split(':', Qt::SkipEmptyParts);
  s.ssh_options = QProcess::splitCommand(ssh_options_->text());
  s.agent_read_only = read_only_->isChecked();
  return s;
}

}  // namespace rcgui
