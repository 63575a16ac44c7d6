#include "pickle_tree_view.h"

#include <algorithm>

#include <QHeaderView>
#include <QLabel>
#include <QStandardItemModel>
#include <QTreeView>
#include <QVBoxLayout>

#include "format.h"

namespace rcgui {
namespace {

using regioncache::pickle::Kind;
using regioncache::pickle::kNoNode;
using regioncache::pickle::Node;
using regioncache::pickle::Tree;

constexpr int kShortText = 120;

QString Quote(const QString& s) {
  QString q = s.left(kShortText);
  q.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r").replace('\t', "\\t");
  return "'" + q + (s.size() > kShortText ? QString::fromUtf8("…'") : "'");
}

QString BytesText(const std::string& b) {
  QString out = "b'";
  for (size_t k = 0; k < b.size() && k < kShortText; ++k) {
    const auto c = static_cast<unsigned char>(b[k]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') out += QChar(c);
    else out += QString("\\x%1").arg(c, 2, 16, QChar('0'));
  }
  return out + (b.size() > kShortText ? QString::fromUtf8("…'") : "'");
}

class Builder {
 public:
  Builder(const Tree& t, int max_rows, int max_depth) : t_(t), max_rows_(max_rows), max_depth_(max_depth) {}

  // A one-line text of a leaf (or a container's kind), for labels.
  QString Short(uint32_t id) const {
    const Node& n = t_.at(id);
    switch (n.kind) {
      case Kind::kNone: return "None";
      case Kind::kBool: return n.b ? "True" : "False";
      case Kind::kInt: return n.big ? QString::fromStdString(n.text) : QString::number(n.i);
      case Kind::kFloat: return QString::number(n.f, 'g', 17);
      case Kind::kStr: return Quote(QString::fromUtf8(n.text.data(), static_cast<qsizetype>(n.text.size())));
      case Kind::kBytes: return BytesText(n.text);
      case Kind::kByteArray: return "bytearray(" + BytesText(n.text) + ")";
      case Kind::kGlobal: return "class " + QString::fromStdString(t_.ClassName(id));
      case Kind::kObject: {
        const std::string cls = t_.ClassName(id);
        return "object " + QString::fromStdString(cls.empty() ? "(of a computed callable)" : cls);
      }
      default: return QString::fromUtf8(regioncache::pickle::KindName(n.kind));
    }
  }

  QString Size(uint32_t id) const {
    const Node& n = t_.at(id);
    const QString span = HumanBytes(n.end > n.first ? n.end - n.first : 0);
    switch (n.kind) {
      case Kind::kStr: return QString("%1 chars").arg(QString::fromUtf8(n.text.data(), static_cast<qsizetype>(n.text.size())).size());
      case Kind::kBytes: case Kind::kByteArray: return HumanBytes(n.text.size());
      case Kind::kList: case Kind::kTuple: case Kind::kSet: case Kind::kFrozenSet:
        return QString("%1 items · %2").arg(n.items.size()).arg(span);
      case Kind::kDict: return QString("%1 items · %2").arg(n.items.size() / 2).arg(span);
      case Kind::kObject: return span;
      default: return {};
    }
  }

  void Add(PickleRow* parent, const QString& prefix, uint32_t id, int depth) {
    if (rows_ >= max_rows_) { cut_ = true; return; }
    ++rows_;
    PickleRow row;
    const Node& n = t_.at(id);
    row.label = prefix + Short(id);
    row.type = QString::fromUtf8(regioncache::pickle::KindName(n.kind));
    row.size = Size(id);
    const bool container = n.kind == Kind::kList || n.kind == Kind::kTuple || n.kind == Kind::kDict ||
                           n.kind == Kind::kSet || n.kind == Kind::kFrozenSet || n.kind == Kind::kObject;
    if (container) {
      if (std::find(path_.begin(), path_.end(), id) != path_.end()) {
        row.label += QString::fromUtf8("  ↻ (contains itself: shown above)");
      } else if (depth >= max_depth_) {
        row.label += QString::fromUtf8("  … (nested deeper than %1 levels)").arg(max_depth_);
      } else {
        path_.push_back(id);
        Children(&row, id, depth);
        path_.pop_back();
      }
    }
    parent->children.push_back(std::move(row));
  }

  void Children(PickleRow* row, uint32_t id, int depth) {
    const Node& n = t_.at(id);
    if (n.kind == Kind::kDict) {
      for (size_t k = 0; k + 1 < n.items.size(); k += 2) Add(row, Short(n.items[k]) + ": ", n.items[k + 1], depth + 1);
      return;
    }
    if (n.kind != Kind::kObject) {
      for (size_t k = 0; k < n.items.size(); ++k) Add(row, QString("[%1] ").arg(k), n.items[k], depth + 1);
      return;
    }
    if (t_.ClassName(id).empty() && n.callable != kNoNode) Add(row, "called: ", n.callable, depth + 1);
    if (n.args != kNoNode && !t_.at(n.args).items.empty()) Add(row, n.newobj ? "new args: " : "args: ", n.args, depth + 1);
    if (n.kwargs != kNoNode) Add(row, "kwargs: ", n.kwargs, depth + 1);
    if (n.state != kNoNode) Add(row, "state: ", n.state, depth + 1);
    for (size_t k = 0; k < n.items.size(); ++k) Add(row, QString("item [%1] ").arg(k), n.items[k], depth + 1);
    for (size_t k = 0; k + 1 < n.dict_items.size(); k += 2)
      Add(row, "item " + Short(n.dict_items[k]) + ": ", n.dict_items[k + 1], depth + 1);
  }

  int rows_ = 0;
  bool cut_ = false;

 private:
  const Tree& t_;
  int max_rows_, max_depth_;
  std::vector<uint32_t> path_;
};

void AddItems(QStandardItem* parent, const PickleRow& row) {
  auto* label = new QStandardItem(row.label);
  auto* type = new QStandardItem(row.type);
  auto* size = new QStandardItem(row.size);
  for (auto* i : {label, type, size}) i->setEditable(false);
  for (const PickleRow& c : row.children) AddItems(label, c);
  parent->appendRow({label, type, size});
}

void RowsText(const QStandardItemModel* m, const QModelIndex& parent, int depth, QString* out) {
  for (int r = 0; r < m->rowCount(parent); ++r) {
    const QModelIndex i = m->index(r, 0, parent);
    *out += QString(depth * 2, ' ') + i.data().toString() + " | " + m->index(r, 1, parent).data().toString() +
            " | " + m->index(r, 2, parent).data().toString() + "\n";
    RowsText(m, i, depth + 1, out);
  }
}

}  // namespace

PickleRows BuildPickleRows(const Tree& tree, int max_rows, int max_depth) {
  PickleRows out;
  if (tree.root == kNoNode) return out;
  Builder b(tree, max_rows, max_depth);
  b.Add(&out.root, {}, tree.root, 0);
  out.ok = true;
  out.rows = b.rows_;
  out.cut = b.cut_;
  return out;
}

PickleTreeView::PickleTreeView(QWidget* parent) : QWidget(parent) {
  note_ = new QLabel;
  note_->setWordWrap(true);
  note_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  model_ = new QStandardItemModel(this);
  view_ = new QTreeView;
  view_->setModel(model_);
  view_->setUniformRowHeights(true);
  view_->setObjectName("pickleTree");
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(note_);
  layout->addWidget(view_, 1);
  clear();
}

void PickleTreeView::clear() {
  model_->clear();
  model_->setHorizontalHeaderLabels({"value", "type", "size"});
  note_->clear();
  note_->hide();
}

void PickleTreeView::setRows(const PickleRows& rows, const QString& note) {
  clear();
  note_->setText(note);
  note_->setVisible(!note.isEmpty());
  if (!rows.ok) return;
  for (const PickleRow& r : rows.root.children) AddItems(model_->invisibleRootItem(), r);
  view_->expandToDepth(1);
  view_->header()->setSectionResizeMode(0, QHeaderView::Stretch);
}

QString PickleTreeView::note() const { return note_->text(); }

QString PickleTreeView::text() const {
  QString out;
  RowsText(model_, {}, 0, &out);
  return out;
}

}  // namespace rcgui
