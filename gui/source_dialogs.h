// The two dialogs that add regions: a Django project (python, settings
// module, python path) and a region typed by hand (kind, location, options).
#pragma once

#include <QDialog>

#include "django_describer.h"
#include "region_spec.h"

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

}  // namespace rcgui
