// The base of the app's table models (the key table, the region list): their
// columns are named once, as header texts in column order, and those give
// columnCount() and the horizontal headerData().
#pragma once

#include <QAbstractTableModel>
#include <QStringList>

namespace rcgui {

class ColumnModel : public QAbstractTableModel {
 public:
  int columnCount(const QModelIndex& parent = QModelIndex()) const override;
  QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;

 protected:
  // headers: one text per column, in the order of the model's Column enum.
  ColumnModel(QStringList headers, QObject* parent);

 private:
  const QStringList headers_;
};

}  // namespace rcgui
