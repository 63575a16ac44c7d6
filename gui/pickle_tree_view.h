// The Tree view of a pickled value: the restricted pickle machine's tree
// (regioncache/pickle_reader.h: nothing in the pickle is imported or run)
// as collapsible rows with each value's type and size. The rows are built
// on the value viewer's worker (BuildPickleRows), the widget shows them.
#pragma once

#include <QString>
#include <QWidget>
#include <vector>

#include "regioncache/pickle_reader.h"

class QLabel;
class QStandardItem;
class QStandardItemModel;
class QTreeView;

namespace rcgui {

struct PickleRow {
  QString label;  // "'title': 'One'", "[2] 42", "object django.http.response.HttpResponse"
  QString type;   // "str", "dict", "object" ...
  QString size;   // "3 items · 120 B", "5 chars", "16 B"
  std::vector<PickleRow> children;
};

struct PickleRows {
  bool ok = false;
  PickleRow root;
  int rows = 0;
  bool cut = false;  // stopped at max_rows
};

// Rows of tree from its root, at most max_rows of them and max_depth deep; a
// container met again inside itself is one row that says so.
PickleRows BuildPickleRows(const regioncache::pickle::Tree& tree, int max_rows = 20000,
                           int max_depth = 64);

class PickleTreeView : public QWidget {
  Q_OBJECT

 public:
  explicit PickleTreeView(QWidget* parent = nullptr);
  // Shows rows (expanded two levels), or only note when rows is not ok.
  void setRows(const PickleRows& rows, const QString& note);
  void clear();

  QTreeView* tree() const { return view_; }
  QString note() const;
  // Every row as "label | type | size", indented by depth (tests, copy).
  QString text() const;

 private:
  QLabel* note_;
  QTreeView* view_;
  QStandardItemModel* model_;
};

}  // namespace rcgui
