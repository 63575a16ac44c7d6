// The key groups: the listed keys as a tree by namespace, each node with its
// entry count and value bytes:
//   "<KEY_PREFIX>:<version>:"  >  kind (regioncache/django_keys.h)  >  name
// where the name is a function's or fragment's name, a page's key_prefix or
// a session engine (plain keys have no third level). Computed on a worker
// from a snapshot of the key table (KeyTableModel::snapshot), so a million
// keys never hold the UI thread; a result for an older snapshot is dropped
// and computed again.
#pragma once

#include <QAbstractItemModel>
#include <QFutureWatcher>
#include <memory>
#include <string>
#include <vector>

#include "key_table_model.h"

namespace rcgui {

struct KeyGroup {
  QString label;
  std::string glob;  // lists this group's keys (the browser's filter); "" when no glob can
  uint64_t entries = 0;
  uint64_t bytes = 0;  // value bytes
  KeyGroup* parent = nullptr;
  int row = 0;
  std::vector<std::unique_ptr<KeyGroup>> children;
};

// The text as a glob that matches only itself (glob characters escaped).
std::string GlobLiteral(std::string_view text);

// The tree of snapshot's rows (the root's children are the prefix/version
// groups, in order of prefix and version; kinds and names sorted).
std::unique_ptr<KeyGroup> GroupKeys(const KeyTableModel::Snapshot& snapshot);

class KeyGroupModel : public QAbstractItemModel {
  Q_OBJECT

 public:
  enum Column { kGroup, kEntries, kBytes, kColumnCount };
  static constexpr int kGlobRole = Qt::UserRole + 1;  // QString: the group's glob ("" if none)

  explicit KeyGroupModel(KeyTableModel* keys, QObject* parent = nullptr);
  ~KeyGroupModel() override;

  // Groups the key table's current rows on a worker; busyChanged brackets it.
  void recompute();
  bool busy() const { return busy_ || again_; }
  const KeyGroup* root() const { return root_.get(); }
  const KeyGroup* group(const QModelIndex& index) const;

  QModelIndex index(int row, int column, const QModelIndex& parent = QModelIndex()) const override;
  QModelIndex parent(const QModelIndex& child) const override;
  int rowCount(const QModelIndex& parent = QModelIndex()) const override;
  int columnCount(const QModelIndex& parent = QModelIndex()) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;

 signals:
  void busyChanged(bool busy);

 private:
  void start();

  KeyTableModel* keys_;
  std::unique_ptr<KeyGroup> root_;
  QFutureWatcher<std::shared_ptr<KeyGroup>> watcher_;
  uint64_t generation_ = 0;  // the key table's content generation the running job saw
  bool busy_ = false;
  bool again_ = false;
};

}  // namespace rcgui
