// The key table: every entry listed so far, in display order. Rows arrive in
// immutable batches (key_loader.h) and are addressed through a compact index
// (batch, offset), so sorting a million rows runs on a worker over a snapshot
// of the index while the UI keeps reading the batches, which never change.
#pragma once

#include <QFutureWatcher>
#include <QSet>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "column_model.h"
#include "key_loader.h"

namespace rcgui {

// The kind column's text ("cached page GET", "template fragment sidebar",
// "@region function app.views.profile") and its tooltip (every part of the
// key: prefix, version, URL hash, language, ...): regioncache/django_keys.h.
QString KeyKindText(std::string_view key);
QString KeyKindDetails(std::string_view key);

class KeyTableModel : public ColumnModel {
  Q_OBJECT

 public:
  enum Column { kKey, kKind, kSize, kExpires, kTimeLeft, kStored, kAccessed, kEncoding, kColumnCount };
  static constexpr int kRawKeyRole = Qt::UserRole + 1;   // QByteArray of the key's bytes
  static constexpr int kSortValueRole = Qt::UserRole + 2;

  explicit KeyTableModel(QObject* parent = nullptr);
  ~KeyTableModel() override;

  int rowCount(const QModelIndex& parent = QModelIndex()) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  // Sorting runs on a worker; sortingChanged() brackets it. Rows appended
  // while it runs stay after the sorted ones until the next sort.
  void sort(int column, Qt::SortOrder order = Qt::AscendingOrder) override;

  void clear();
  void append(const EntryBatch& batch);
  // Drops the rows of these keys (after a delete or purge in the app).
  void removeKeys(const std::vector<std::string>& keys);

  // "Time left" changes with the clock: tells the views to repaint it for
  // rows first..last (the visible ones; a million rows need no repaint).
  void timePassed(int first, int last);

  const regioncache::EntryInfo& entry(int row) const;

  // The rows as they are now, for work on a worker (the key groups): the
  // batches never change, the index is a copy.
  struct RowRef {
    uint32_t batch;
    uint32_t offset;
  };
  struct Snapshot {
    std::vector<EntryBatch> batches;
    std::vector<RowRef> rows;
    const regioncache::EntryInfo& at(const RowRef& r) const { return (*batches[r.batch])[r.offset]; }
  };
  Snapshot snapshot() const { return {batches_, rows_}; }
  // Bumped by clear(), append() and removals: a snapshot of an older state is stale.
  uint64_t contentGeneration() const { return content_generation_; }
  bool sorting() const { return sort_busy_ || sort_again_; }
  int sortColumn() const { return sort_column_; }

 signals:
  void sortingChanged(bool busy);

 private:
  void startSort();
  void applySort(uint64_t generation, std::vector<RowRef> sorted);

  std::vector<EntryBatch> batches_;
  std::vector<RowRef> rows_;  // display order
  int sort_column_ = -1;
  Qt::SortOrder sort_order_ = Qt::AscendingOrder;
  uint64_t content_generation_ = 0;
  uint64_t generation_ = 0;   // bumped by clear() and removals: a sort of an older state is dropped
  QFutureWatcher<std::vector<RowRef>> sort_watcher_;
  uint64_t sort_generation_ = 0;
  bool sort_busy_ = false;   // a sort runs, or its result is not applied yet
  bool sort_again_ = false;  // sort() was called while a sort ran: its result is stale
};

}  // namespace rcgui
