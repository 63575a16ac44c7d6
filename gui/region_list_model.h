// The region list: one row per region with its latest figures, refreshed on
// a worker (opening a store or asking a server may block), and a short
// history of fill and hit ratio per region for the chart.
#pragma once

#include <QFutureWatcher>
#include <deque>
#include <vector>

#include "column_model.h"
#include "region.h"

namespace rcgui {

struct RegionSample {
  qint64 t_ms = 0;
  double fill = 0;        // bytes_used / capacity, 0..1 (0 when capacity is unknown)
  double hit_ratio = -1;  // over the interval since the previous sample; -1: no lookups
};

struct RegionRow {
  RegionPtr region;
  bool have_stats = false;
  regioncache::Stats stats;
  QString error;  // the last refresh's failure, naming region and cause; "" when fine
  std::deque<RegionSample> history;
};

class RegionListModel : public ColumnModel {
  Q_OBJECT

 public:
  enum Column { kName, kKind, kLocation, kEntries, kUsed, kHitRatio, kStatus, kColumnCount };
  static constexpr size_t kHistory = 240;

  explicit RegionListModel(QObject* parent = nullptr);
  ~RegionListModel() override;

  int rowCount(const QModelIndex& parent = QModelIndex()) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;

  // Adds the regions not shown yet (same kind and location = same region);
  // returns how many were added. A region shown from shared-memory discovery
  // or by hand and now listed by a Django project (a spec with a backend)
  // takes the project's spec: its CACHES alias, options and KEY_PREFIX
  // (regionReplaced; the row keeps its figures).
  int addRegions(const QList<RegionSpec>& specs);
  void removeRegion(int row);
  const RegionRow& row(int r) const { return rows_[static_cast<size_t>(r)]; }
  RegionPtr region(int r) const { return rows_[static_cast<size_t>(r)].region; }
  int rowOf(const QString& identity) const;

  // Reads every region's stats on a worker; refreshed() when the figures are
  // in. A refresh asked for while one runs is folded into the next one.
  void refresh();
  bool refreshing() const { return busy_; }

 signals:
  void refreshed();
  void regionReplaced(int row);  // row now holds a new Region (region(row))

 private:
  struct Result {
    RegionPtr region;
    bool ok = false;
    regioncache::Stats stats;
    QString error;
  };
  void apply(const std::vector<Result>& results);

  std::vector<RegionRow> rows_;
  QFutureWatcher<std::vector<Result>> watcher_;
  bool again_ = false;
  bool busy_ = false;  // a pass is running or its result is not applied yet
};

}  // namespace rcgui
