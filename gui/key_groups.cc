#include "key_groups.h"

#include <QtConcurrent/QtConcurrentRun>
#include <algorithm>
#include <map>
#include <tuple>

#include "format.h"
#include "regioncache/django_keys.h"

namespace rcgui {
namespace {

using regioncache::DjangoKey;
using regioncache::DjangoKeyKind;

QString Text(std::string_view v) { return QString::fromUtf8(v.data(), static_cast<qsizetype>(v.size())); }

// The third level's name of a key (empty: none), and its glob after the
// "<prefix>:<version>:" head.
std::string_view NameOf(const DjangoKey& k) {
  switch (k.kind) {
    case DjangoKeyKind::kPage:
    case DjangoKeyKind::kPageHeaders: return k.page_prefix;
    case DjangoKeyKind::kFragment:
    case DjangoKeyKind::kFunction: return k.name;
    case DjangoKeyKind::kSession: return k.engine;
    case DjangoKeyKind::kPlain: break;
  }
  return {};
}

std::string KindGlob(DjangoKeyKind kind) {
  switch (kind) {
    case DjangoKeyKind::kPage: return "views.decorators.cache.cache_page.*";
    case DjangoKeyKind::kPageHeaders: return "views.decorators.cache.cache_header.*";
    case DjangoKeyKind::kFragment: return "template.cache.*";
    case DjangoKeyKind::kSession: return "django.contrib.sessions.cache*";
    default: return {};  // functions and plain keys share no head
  }
}

std::string NameGlob(DjangoKeyKind kind, std::string_view name) {
  const std::string n = GlobLiteral(name);
  std::string hex32;
  for (int i = 0; i < 32; ++i) hex32 += "[0-9a-f]";
  switch (kind) {
    // A method starts upper case, a hash is hex: "shop" does not match "shop.v2".
    case DjangoKeyKind::kPage: return "views.decorators.cache.cache_page." + n + ".[A-Z]*";
    case DjangoKeyKind::kPageHeaders: return "views.decorators.cache.cache_header." + n + "." + hex32 + "*";
    case DjangoKeyKind::kFragment: return "template.cache." + n + "." + hex32;
    // Session keys have 32 characters: "cache" does not match "cached_db".
    case DjangoKeyKind::kSession: return "django.contrib.sessions." + n + std::string(32, '?');
    case DjangoKeyKind::kFunction: return n + "[(#]*";
    case DjangoKeyKind::kPlain: break;
  }
  return {};
}

QString NameLabel(DjangoKeyKind kind, std::string_view name) {
  if (kind == DjangoKeyKind::kPage || kind == DjangoKeyKind::kPageHeaders)
    return name.empty() ? QString("no key_prefix") : QString("key_prefix \"%1\"").arg(Text(name));
  return Text(name);
}

struct Counts {
  uint64_t entries = 0, bytes = 0;
  void add(uint64_t b) {
    ++entries;
    bytes += b;
  }
};

// Views into the snapshot's keys while counting; owned text only for the
// few groups at the end.
using HeadKey = std::tuple<bool, std::string_view, int64_t>;  // versioned, prefix, version
struct KindCounts {
  Counts all;
  std::map<std::string_view, Counts> names;
};
struct HeadCounts {
  Counts all;
  std::map<DjangoKeyKind, KindCounts> kinds;
};

KeyGroup* AddChild(KeyGroup* parent, QString label, std::string glob, const Counts& c) {
  auto g = std::make_unique<KeyGroup>();
  g->label = std::move(label);
  g->glob = std::move(glob);
  g->entries = c.entries;
  g->bytes = c.bytes;
  g->parent = parent;
  g->row = static_cast<int>(parent->children.size());
  parent->children.push_back(std::move(g));
  return parent->children.back().get();
}

}  // namespace

std::string GlobLiteral(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::unique_ptr<KeyGroup> GroupKeys(const KeyTableModel::Snapshot& snapshot) {
  std::map<HeadKey, HeadCounts> heads;
  // Consecutive keys mostly share their head and kind: remember the last.
  HeadCounts* last_head = nullptr;
  HeadKey last_key;
  Counts total;
  for (const KeyTableModel::RowRef& r : snapshot.rows) {
    const regioncache::EntryInfo& e = snapshot.at(r);
    const DjangoKey k = regioncache::ClassifyDjangoKey(e.key);
    const HeadKey head{k.versioned, k.prefix, k.version};
    if (!last_head || head != last_key) {
      last_head = &heads[head];
      last_key = head;
    }
    last_head->all.add(e.value_size);
    KindCounts& kind = last_head->kinds[k.kind];
    kind.all.add(e.value_size);
    const std::string_view name = NameOf(k);
    if (k.kind != DjangoKeyKind::kPlain) kind.names[name].add(e.value_size);
    total.add(e.value_size);
  }
  auto root = std::make_unique<KeyGroup>();
  root->label = "all keys";
  root->entries = total.entries;
  root->bytes = total.bytes;
  for (const auto& [head, hc] : heads) {
    const auto& [versioned, prefix, version] = head;
    const std::string head_text =
        versioned ? std::string(prefix) + ":" + std::to_string(version) + ":" : std::string();
    const QString label =
        versioned ? QString("KEY_PREFIX \"%1\", version %2").arg(Text(prefix)).arg(version)
                  : QString("keys without a prefix and version");
    const std::string head_glob = versioned ? GlobLiteral(head_text) : std::string();
    KeyGroup* h = AddChild(root.get(), label, versioned ? head_glob + "*" : std::string(), hc.all);
    for (const auto& [kind, kc] : hc.kinds) {
      const std::string kg = KindGlob(kind);
      KeyGroup* kn = AddChild(h, Text(regioncache::DjangoKeyKindLabel(kind)),
                              kg.empty() ? std::string() : head_glob + kg, kc.all);
      for (const auto& [name, c] : kc.names)
        AddChild(kn, NameLabel(kind, name), head_glob + NameGlob(kind, name), c);
    }
  }
  return root;
}

KeyGroupModel::KeyGroupModel(KeyTableModel* keys, QObject* parent)
    : QAbstractItemModel(parent), keys_(keys), root_(std::make_unique<KeyGroup>()) {
  connect(&watcher_, &QFutureWatcher<std::shared_ptr<KeyGroup>>::finished, this, [this] {
    busy_ = false;
    if (again_ || generation_ != keys_->contentGeneration()) {
      // Rows changed while it ran: group them again.
      again_ = false;
      start();
      return;
    }
    std::shared_ptr<KeyGroup> result = watcher_.result();
    beginResetModel();
    root_ = std::make_unique<KeyGroup>();
    std::swap(root_->children, result->children);
    for (auto& c : root_->children) c->parent = root_.get();
    root_->label = result->label;
    root_->entries = result->entries;
    root_->bytes = result->bytes;
    endResetModel();
    emit busyChanged(false);
  });
}

KeyGroupModel::~KeyGroupModel() { watcher_.waitForFinished(); }

void KeyGroupModel::recompute() {
  if (busy_) {
    again_ = true;
    return;
  }
  start();
  emit busyChanged(true);
}

void KeyGroupModel::start() {
  busy_ = true;
  generation_ = keys_->contentGeneration();
  watcher_.setFuture(QtConcurrent::run([snapshot = keys_->snapshot()] {
    return std::shared_ptr<KeyGroup>(GroupKeys(snapshot));
  }));
}

const KeyGroup* KeyGroupModel::group(const QModelIndex& index) const {
  return index.isValid() ? static_cast<const KeyGroup*>(index.internalPointer()) : root_.get();
}

QModelIndex KeyGroupModel::index(int row, int column, const QModelIndex& parent) const {
  const KeyGroup* p = group(parent);
  if (row < 0 || column < 0 || column >= kColumnCount || row >= static_cast<int>(p->children.size()))
    return {};
  return createIndex(row, column, p->children[static_cast<size_t>(row)].get());
}

QModelIndex KeyGroupModel::parent(const QModelIndex& child) const {
  if (!child.isValid()) return {};
  const KeyGroup* p = group(child)->parent;
  if (!p || p == root_.get()) return {};
  return createIndex(p->row, 0, const_cast<KeyGroup*>(p));
}

int KeyGroupModel::rowCount(const QModelIndex& parent) const {
  if (parent.isValid() && parent.column() != 0) return 0;
  return static_cast<int>(group(parent)->children.size());
}

int KeyGroupModel::columnCount(const QModelIndex&) const { return kColumnCount; }

QVariant KeyGroupModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid()) return {};
  const KeyGroup* g = group(index);
  if (role == kGlobRole) return QString::fromStdString(g->glob);
  if (role == Qt::TextAlignmentRole)
    return index.column() == kGroup ? QVariant() : QVariant(Qt::AlignRight | Qt::AlignVCenter);
  if (role == Qt::ToolTipRole) {
    if (index.column() == kBytes) return QString("%1 bytes of values").arg(g->bytes);
    return g->glob.empty() ? QString() : QString("keys matching %1").arg(QString::fromStdString(g->glob));
  }
  if (role != Qt::DisplayRole) return {};
  switch (index.column()) {
    case kGroup: return g->label;
    case kEntries: return QString::number(g->entries);
    case kBytes: return HumanBytes(g->bytes);
  }
  return {};
}

QVariant KeyGroupModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case kGroup: return QString("Group");
    case kEntries: return QString("Entries");
    case kBytes: return QString("Value bytes");
  }
  return {};
}

}  // namespace rcgui
