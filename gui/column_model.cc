#include "column_model.h"

namespace rcgui {

ColumnModel::ColumnModel(QStringList headers, QObject* parent)
    : QAbstractTableModel(parent), headers_(std::move(headers)) {}

int ColumnModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(headers_.size());
}

QVariant ColumnModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole || section < 0 || section >= headers_.size())
    return QAbstractTableModel::headerData(section, o, role);
  return headers_[section];
}

}  // namespace rcgui
