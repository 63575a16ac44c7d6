// The dialogs that add regions: a Django project (python, settings module,
// python path), a region typed by hand (kind, location, options) and a
// remote site (ssh destination, settings module, remote python, python
// path, extra ssh options, a read-only agent).
#pragma once

#include <QDialog>

#include "django_describer.h"
#include "region_spec.h"
#include "remote_store.h"

class QCheckBox;
class QComboBox;
class QLineEdit;
class QPlainTextEdit;

namespace rcgui {

class DjangoProjectDialog : public QDialog {
  Q_OBJECT

 public:
  explicit DjangoProjectDialog(const DjangoProject& initial, QWidget* parent = nullptr);
  DjangoProject project() const;

 private:
  QLineEdit* python_;
  QLineEdit* settings_;
  QLineEdit* pythonpath_;
};

class ManualRegionDialog : public QDialog {
  Q_OBJECT

 public:
  explicit ManualRegionDialog(QWidget* parent = nullptr);
  // False with *error when the fields do not make a region.
  bool spec(RegionSpec* out, QString* error) const;

 private:
  QComboBox* kind_;
  QLineEdit* location_;
  QPlainTextEdit* options_;
};

class RemoteSiteDialog : public QDialog {
  Q_OBJECT

 public:
  explicit RemoteSiteDialog(const RemoteSite& initial, QWidget* parent = nullptr);
  RemoteSite site() const;

 private:
  RemoteSite initial_;
  QLineEdit* destination_;
  QLineEdit* settings_;
  QLineEdit* python_;
  QLineEdit* pythonpath_;
  QLineEdit* ssh_options_;
  QCheckBox* read_only_;
};

}  // namespace rcgui
