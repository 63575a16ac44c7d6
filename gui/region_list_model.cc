#include "region_list_model.h"

#include <QBrush>
#include <QDateTime>
#include <QtConcurrent/QtConcurrentRun>

#include "format.h"

namespace rcgui {

RegionListModel::RegionListModel(QObject* parent)
    : ColumnModel({"Region", "Kind", "Location", "Entries", "Used / capacity", "Hit ratio", "Status"}, parent) {
  connect(&watcher_, &QFutureWatcher<std::vector<Result>>::finished, this, [this] {
    busy_ = false;
    apply(watcher_.result());
    emit refreshed();
    if (again_) {
      again_ = false;
      refresh();
    }
  });
}

RegionListModel::~RegionListModel() { watcher_.waitForFinished(); }

int RegionListModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(rows_.size());
}

QVariant RegionListModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  const RegionRow& r = row(index.row());
  const RegionSpec& spec = r.region->spec();
  const regioncache::Stats& st = r.stats;
  const int col = index.column();
  if (role == Qt::ForegroundRole && !r.error.isEmpty()) return QBrush(Qt::red);
  if (role == Qt::ToolTipRole) {
    if (!r.error.isEmpty()) return r.error;
    QString tip = QString("%1 (%2)\nfrom %3").arg(spec.name, spec.kind, spec.origin);
    if (!spec.backend.isEmpty()) tip += "\nbackend " + spec.backend;
    for (const auto& [k, v] : st.extra)
      tip += QString("\n%1: %2").arg(QString::fromStdString(k), QString::fromStdString(v));
    return tip;
  }
  if (role == Qt::TextAlignmentRole && (col == kEntries || col == kUsed || col == kHitRatio))
    return QVariant(Qt::AlignRight | Qt::AlignVCenter);
  if (role != Qt::DisplayRole) return {};
  switch (col) {
    case kName: return spec.name;
    case kKind: return spec.kind;
    case kLocation: return spec.remote.isEmpty() ? spec.location : spec.location + " on " + spec.remote;
    case kEntries: return r.have_stats ? QVariant(quint64(st.entries)) : QVariant();
    case kUsed:
      if (!r.have_stats) return {};
      if (st.capacity == 0) return HumanBytes(st.bytes_used);
      return QString("%1 / %2 (%3 %)").arg(HumanBytes(st.bytes_used), HumanBytes(st.capacity))
          .arg(100.0 * double(st.bytes_used) / double(st.capacity), 0, 'f', 1);
    case kHitRatio: return r.have_stats ? HitRatioText(st.hits, st.misses) : QVariant();
    case kStatus: return r.error.isEmpty() ? (r.have_stats ? QString("ok") : QString("…")) : r.error;
  }
  return {};
}

int RegionListModel::rowOf(const QString& identity) const {
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].region->spec().Identity() == identity) return static_cast<int>(i);
  return -1;
}

namespace {

// A spec from a Django project (or a describe JSON) knows the CACHES alias,
// the OPTIONS and the KEY_PREFIX; one found in /dev/shm or typed by hand
// knows only where the region is.
bool FromDjango(const RegionSpec& s) { return !s.backend.isEmpty(); }

}  // namespace

int RegionListModel::addRegions(const QList<RegionSpec>& specs) {
  std::vector<RegionSpec> fresh;
  for (const RegionSpec& s : specs) {
    const int existing = rowOf(s.Identity());
    if (existing >= 0) {
      // The same region: Django's names win over what discovery found.
      RegionRow& r = rows_[static_cast<size_t>(existing)];
      if (FromDjango(s) && !FromDjango(r.region->spec())) {
        r.region = std::make_shared<Region>(s);
        emit dataChanged(index(existing, 0), index(existing, kColumnCount - 1));
        emit regionReplaced(existing);
      }
      continue;
    }
    bool dup = false;
    for (const RegionSpec& f : fresh) dup = dup || f.Identity() == s.Identity();
    if (!dup) fresh.push_back(s);
  }
  if (fresh.empty()) return 0;
  const int first = rowCount();
  beginInsertRows(QModelIndex(), first, first + static_cast<int>(fresh.size()) - 1);
  for (auto& s : fresh) rows_.push_back(RegionRow{std::make_shared<Region>(s), false, {}, {}, {}});
  endInsertRows();
  return static_cast<int>(fresh.size());
}

void RegionListModel::removeRegion(int r) {
  if (r < 0 || r >= rowCount()) return;
  beginRemoveRows(QModelIndex(), r, r);
  rows_.erase(rows_.begin() + r);
  endRemoveRows();
}

void RegionListModel::refresh() {
  // busy_, not watcher_.isRunning(): a pass that has finished on its thread
  // but whose result the UI thread has not applied yet is still this pass
  // (a new setFuture would drop its finished signal).
  if (busy_) {
    again_ = true;
    return;
  }
  busy_ = true;
  std::vector<RegionPtr> regions;
  for (const auto& r : rows_) regions.push_back(r.region);
  watcher_.setFuture(QtConcurrent::run([regions] {
    std::vector<Result> out;
    for (const auto& region : regions) {
      Result res;
      res.region = region;
      regioncache::Status s;
      auto store = region->acquire(&s);
      if (store) s = store->GetStats(&res.stats);
      res.ok = s.ok();
      if (s.ok()) res.error = DownServersText(*region, res.stats);  // figures of the servers up
      if (!s.ok()) {
        res.error = StatusText(*region, s);
        // The store may be stale (segment replaced, directory gone): reopen next time.
        if (store) region->forgetStore();
      }
      out.push_back(std::move(res));
    }
    return out;
  }));
}

void RegionListModel::apply(const std::vector<Result>& results) {
  const qint64 now = QDateTime::currentMSecsSinceEpoch();
  for (const Result& res : results) {
    int i = -1;
    for (size_t k = 0; k < rows_.size(); ++k)
      if (rows_[k].region == res.region) i = static_cast<int>(k);
    if (i < 0) continue;  // removed while refreshing
    RegionRow& r = rows_[static_cast<size_t>(i)];
    r.error = res.error;
    if (res.ok) {
      RegionSample sample;
      sample.t_ms = now;
      sample.fill = res.stats.capacity ? double(res.stats.bytes_used) / double(res.stats.capacity) : 0;
      uint64_t dh = res.stats.hits, dm = res.stats.misses;
      if (r.have_stats && res.stats.hits >= r.stats.hits && res.stats.misses >= r.stats.misses) {
        dh -= r.stats.hits;
        dm -= r.stats.misses;
      }
      sample.hit_ratio = dh + dm ? double(dh) / double(dh + dm) : -1;
      r.history.push_back(sample);
      while (r.history.size() > kHistory) r.history.pop_front();
      r.stats = res.stats;
      r.have_stats = true;
    }
    emit dataChanged(index(i, 0), index(i, kColumnCount - 1));
  }
}

}  // namespace rcgui
