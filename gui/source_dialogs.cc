#include "source_dialogs.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>

#include "regioncache/store.h"

namespace rcgui {

DjangoProjectDialog::DjangoProjectDialog(const DjangoProject& initial, QWidget* parent) : QDialog(parent) {
  setWindowTitle("Open a Django project");
  python_ = new QLineEdit(initial.python);
  settings_ = new QLineEdit(initial.settings);
  settings_->setPlaceholderText("mysite.settings");
  pythonpath_ = new QLineEdit(initial.pythonpath.join(QDir::listSeparator()));
  pythonpath_->setPlaceholderText("directory that holds the settings package (optional)");
  auto* form = new QFormLayout(this);
  form->addRow(new QLabel("The app runs  python -m regioncache describe  to read the project's CACHES."));
  form->addRow("Python", python_);
  form->addRow("Settings module", settings_);
  form->addRow("Python path", pythonpath_);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  form->addRow(buttons);
}

DjangoProject DjangoProjectDialog::project() const {
  DjangoProject p;
  p.python = python_->text().trimmed().isEmpty() ? QString("python3") : python_->text().trimmed();
  p.settings = settings_->text().trimmed();
  p.pythonpath = pythonpath_->text().split(QDir::listSeparator(), Qt::SkipEmptyParts);
  return p;
}

ManualRegionDialog::ManualRegionDialog(QWidget* parent) : QDialog(parent) {
  setWindowTitle("Add a region by hand");
  kind_ = new QComboBox;
  for (const auto& k : regioncache::StoreKinds()) kind_->addItem(QString::fromStdString(k));
  location_ = new QLineEdit;
  location_->setPlaceholderText("shm: region name · file: directory · memcached: host:port;host:port");
  options_ = new QPlainTextEdit;
  options_->setPlaceholderText("NAME=value, one per line (e.g. SIZE=64MB)");
  options_->setMaximumHeight(90);
  auto* form = new QFormLayout(this);
  form->addRow("Kind", kind_);
  form->addRow("Location", location_);
  form->addRow("Options", options_);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  form->addRow(buttons);
}

bool ManualRegionDialog::spec(RegionSpec* out, QString* error) const {
  return ManualRegion(kind_->currentText(), location_->text(), options_->toPlainText(), out, error);
}

}  // namespace rcgui
