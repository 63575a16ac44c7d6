#include "source_dialogs.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
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

}  // namespace rcgui
