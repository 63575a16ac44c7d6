#include "key_table_model.h"

#include <QtConcurrent/QtConcurrentRun>
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "format.h"
#include "regioncache/clock.h"
#include "regioncache/django_keys.h"

namespace rcgui {

using regioncache::EntryInfo;

KeyTableModel::KeyTableModel(QObject* parent)
    : ColumnModel({"Key", "Kind", "Value size", "Expires", "Time left", "Stored", "Accessed", "Encoding"}, parent) {
  connect(&sort_watcher_, &QFutureWatcher<std::vector<RowRef>>::finished, this, [this] {
    sort_busy_ = false;
    if (sort_again_) {
      sort_again_ = false;
      startSort();
      return;
    }
    applySort(sort_generation_, sort_watcher_.result());
    if (!sorting()) emit sortingChanged(false);
  });
}

KeyTableModel::~KeyTableModel() { sort_watcher_.waitForFinished(); }

int KeyTableModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(rows_.size());
}

const EntryInfo& KeyTableModel::entry(int row) const {
  const RowRef& r = rows_[static_cast<size_t>(row)];
  return (*batches_[r.batch])[r.offset];
}

QVariant KeyTableModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  const EntryInfo& e = entry(index.row());
  const int col = index.column();
  if (role == kRawKeyRole) return QByteArray(e.key.data(), static_cast<qsizetype>(e.key.size()));
  if (role == Qt::TextAlignmentRole)
    return col == kSize ? QVariant(Qt::AlignRight | Qt::AlignVCenter) : QVariant();
  if (role == kSortValueRole) {
    switch (col) {
      case kKey: return QString::fromUtf8(e.key.data(), static_cast<qsizetype>(e.key.size()));
      case kKind: return int(regioncache::ClassifyDjangoKey(e.key).kind);
      case kSize: return quint64(e.value_size);
      case kExpires:
      case kTimeLeft: return qint64(e.expires_ms);
      case kStored: return qint64(e.stored_ms);
      case kAccessed: return qint64(e.accessed_ms);
      case kEncoding: return quint32(e.flags);
    }
    return {};
  }
  if (role != Qt::DisplayRole && role != Qt::ToolTipRole) return {};
  const int64_t now = regioncache::NowMs();
  switch (col) {
    case kKey: return QString::fromUtf8(e.key.data(), static_cast<qsizetype>(e.key.size()));
    case kKind: return role == Qt::ToolTipRole ? KeyKindDetails(e.key) : KeyKindText(e.key);
    case kSize: return role == Qt::ToolTipRole ? QString("%1 bytes").arg(e.value_size)
                                               : HumanBytes(e.value_size);
    case kExpires: return e.expires_ms ? EpochMsText(e.expires_ms) : QString("never");
    case kTimeLeft: return TimeLeftText(e.expires_ms, now);
    case kStored: return e.stored_ms ? EpochMsText(e.stored_ms) : QString::fromUtf8("—");
    case kAccessed: return e.accessed_ms ? EpochMsText(e.accessed_ms) : QString::fromUtf8("—");
    case kEncoding: return EncodingText(e.flags);
  }
  return {};
}

QString KeyKindText(std::string_view key) {
  using regioncache::DjangoKeyKind;
  const regioncache::DjangoKey k = regioncache::ClassifyDjangoKey(key);
  const QString label = QString::fromUtf8(regioncache::DjangoKeyKindLabel(k.kind));
  auto text = [](std::string_view v) { return QString::fromUtf8(v.data(), static_cast<qsizetype>(v.size())); };
  switch (k.kind) {
    case DjangoKeyKind::kPage: return QString("%1 %2").arg(label, text(k.method));
    case DjangoKeyKind::kFragment: return QString("%1 %2").arg(label, text(k.name));
    case DjangoKeyKind::kSession: return QString("%1 (%2)").arg(label, text(k.engine));
    case DjangoKeyKind::kFunction:
      return QString("%1 %2%3").arg(label, text(k.name), k.lock ? " (lock)" : "");
    default: return label;
  }
}

QString KeyKindDetails(std::string_view key) {
  const regioncache::DjangoKey k = regioncache::ClassifyDjangoKey(key);
  QStringList lines{QString::fromUtf8(regioncache::DjangoKeyKindLabel(k.kind))};
  auto add = [&](const char* name, std::string_view v) {
    if (!v.empty())
      lines << QString("%1: %2").arg(name, QString::fromUtf8(v.data(), static_cast<qsizetype>(v.size())));
  };
  if (k.versioned) {
    lines << QString("KEY_PREFIX: \"%1\"").arg(QString::fromUtf8(k.prefix.data(), static_cast<qsizetype>(k.prefix.size())));
    lines << QString("version: %1").arg(k.version);
  }
  add("key_prefix of the page", k.page_prefix);
  add("method", k.method);
  add("URL hash (md5 of the absolute URL)", k.url_hash);
  add("Vary headers hash", k.header_hash);
  add("language", k.language);
  add("time zone", k.time_zone);
  add("name", k.name);
  add("vary_on hash", k.vary_hash);
  add("arguments", k.arguments);
  add("arguments hash", k.args_hash);
  add("session engine", k.engine);
  if (k.lock) lines << "the stampede lock of this call";
  return lines.join('\n');
}

void KeyTableModel::timePassed(int first, int last) {
  first = std::max(first, 0);
  last = std::min(last, rowCount() - 1);
  if (first > last) return;
  emit dataChanged(index(first, kTimeLeft), index(last, kTimeLeft), {Qt::DisplayRole});
}

void KeyTableModel::clear() {
  beginResetModel();
  batches_.clear();
  rows_.clear();
  ++generation_;
  ++content_generation_;
  endResetModel();
}

void KeyTableModel::append(const EntryBatch& batch) {
  if (!batch || batch->empty()) return;
  const int first = static_cast<int>(rows_.size());
  const int last = first + static_cast<int>(batch->size()) - 1;
  beginInsertRows(QModelIndex(), first, last);
  const uint32_t b = static_cast<uint32_t>(batches_.size());
  batches_.push_back(batch);
  rows_.reserve(rows_.size() + batch->size());
  for (uint32_t i = 0; i < batch->size(); ++i) rows_.push_back({b, i});
  ++content_generation_;
  endInsertRows();
}

void KeyTableModel::removeKeys(const std::vector<std::string>& keys) {
  if (keys.empty() || rows_.empty()) return;
  std::unordered_set<std::string_view> gone(keys.begin(), keys.end());
  ++generation_;
  ++content_generation_;
  // Remove contiguous runs from the end so earlier row numbers stay valid.
  int row = static_cast<int>(rows_.size()) - 1;
  while (row >= 0) {
    if (!gone.count(entry(row).key)) {
      --row;
      continue;
    }
    int last = row;
    while (row - 1 >= 0 && gone.count(entry(row - 1).key)) --row;
    beginRemoveRows(QModelIndex(), row, last);
    rows_.erase(rows_.begin() + row, rows_.begin() + last + 1);
    endRemoveRows();
    --row;
  }
}

namespace {

// The ordering of one column; keys break ties so the order is total.
struct Less {
  int column;
  bool operator()(const EntryInfo& a, const EntryInfo& b) const {
    auto never_last = [](int64_t e) { return e == 0 ? INT64_MAX : e; };
    switch (column) {
      case KeyTableModel::kSize:
        if (a.value_size != b.value_size) return a.value_size < b.value_size;
        break;
      case KeyTableModel::kExpires:
      case KeyTableModel::kTimeLeft:
        if (a.expires_ms != b.expires_ms) return never_last(a.expires_ms) < never_last(b.expires_ms);
        break;
      case KeyTableModel::kStored:
        if (a.stored_ms != b.stored_ms) return a.stored_ms < b.stored_ms;
        break;
      case KeyTableModel::kAccessed:
        if (a.accessed_ms != b.accessed_ms) return a.accessed_ms < b.accessed_ms;
        break;
      case KeyTableModel::kEncoding:
        if (a.flags != b.flags) return a.flags < b.flags;
        break;
      default:
        break;
    }
    return a.key < b.key;
  }
};

}  // namespace

void KeyTableModel::sort(int column, Qt::SortOrder order) {
  if (column < 0 || column >= kColumnCount) return;
  sort_column_ = column;
  sort_order_ = order;
  // sort_busy_, not sort_watcher_.isRunning(): a sort done on its thread
  // whose result is not applied yet is still running for the model.
  if (sort_busy_) {
    sort_again_ = true;  // never wait on the UI thread: sort again when it is done
    return;
  }
  startSort();
  emit sortingChanged(true);
}

void KeyTableModel::startSort() {
  sort_busy_ = true;
  const int column = sort_column_;
  const Qt::SortOrder order = sort_order_;
  sort_generation_ = generation_;
  // The batches are immutable and shared; the index is copied.
  auto future = QtConcurrent::run([batches = batches_, rows = rows_, column, order]() mutable {
    Less less{column};
    auto at = [&](const RowRef& r) -> const EntryInfo& { return (*batches[r.batch])[r.offset]; };
    if (column == kKind) {
      // The kind of each row once, then by kind and key.
      std::vector<std::pair<uint8_t, RowRef>> kinds;
      kinds.reserve(rows.size());
      for (const RowRef& r : rows)
        kinds.push_back({static_cast<uint8_t>(regioncache::ClassifyDjangoKey(at(r).key).kind), r});
      auto kind_less = [&](const std::pair<uint8_t, RowRef>& a, const std::pair<uint8_t, RowRef>& b) {
        return a.first != b.first ? a.first < b.first : at(a.second).key < at(b.second).key;
      };
      std::stable_sort(kinds.begin(), kinds.end(), [&](const auto& a, const auto& b) {
        return order == Qt::AscendingOrder ? kind_less(a, b) : kind_less(b, a);
      });
      for (size_t i = 0; i < rows.size(); ++i) rows[i] = kinds[i].second;
      return rows;
    }
    std::stable_sort(rows.begin(), rows.end(), [&](const RowRef& a, const RowRef& b) {
      return order == Qt::AscendingOrder ? less(at(a), at(b)) : less(at(b), at(a));
    });
    return rows;
  });
  sort_watcher_.setFuture(future);
}

void KeyTableModel::applySort(uint64_t generation, std::vector<RowRef> sorted) {
  if (generation != generation_) {
    // Rows were removed or cleared meanwhile: sort the current rows again.
    if (!rows_.empty()) startSort();
    return;
  }
  // rows_ = sorted prefix + rows appended while sorting (append() only adds at the end).
  emit layoutAboutToBeChanged({}, QAbstractItemModel::VerticalSortHint);
  const size_t n = sorted.size();
  auto pack = [](const RowRef& r) { return (uint64_t(r.batch) << 32) | r.offset; };
  const QModelIndexList persistent = persistentIndexList();
  std::vector<uint64_t> old_refs;  // the row each persistent index showed, before the move
  std::unordered_map<uint64_t, int> new_row;
  for (const QModelIndex& i : persistent) {
    old_refs.push_back(pack(rows_[static_cast<size_t>(i.row())]));
    new_row[old_refs.back()] = -1;
  }
  for (size_t i = 0; i < n; ++i) rows_[i] = sorted[i];
  if (!new_row.empty()) {
    for (size_t i = 0; i < rows_.size(); ++i) {
      auto it = new_row.find(pack(rows_[i]));
      if (it != new_row.end()) it->second = static_cast<int>(i);
    }
  }
  QModelIndexList from, to;
  for (qsizetype k = 0; k < persistent.size(); ++k) {
    from << persistent[k];
    to << index(new_row[old_refs[static_cast<size_t>(k)]], persistent[k].column());
  }
  changePersistentIndexList(from, to);
  emit layoutChanged({}, QAbstractItemModel::VerticalSortHint);
}

}  // namespace rcgui
