#include "key_browser.h"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QTabWidget>
#include <QTableView>
#include <QTreeView>
#include <QTimer>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "page_index.h"
#include "value_viewer.h"

namespace rcgui {

KeyBrowser::KeyBrowser(WriteGate* gate, QWidget* parent) : QWidget(parent), gate_(gate) {
  confirm_ = [this](const QString& title, const QString& text) {
    return QMessageBox::question(this, title, text, QMessageBox::Yes | QMessageBox::Cancel,
                                 QMessageBox::Cancel) == QMessageBox::Yes;
  };
  model_ = new KeyTableModel(this);
  groups_ = new KeyGroupModel(model_, this);
  loader_ = new KeyLoader(this);

  filter_ = new QLineEdit;
  filter_->setObjectName("filter");
  filter_->setPlaceholderText("filter keys (Ctrl+F): substring, or a glob like :1:user:*");
  filter_->setClearButtonEnabled(true);
  mode_ = new QComboBox;
  mode_->addItems({"substring", "glob"});
  reload_ = new QPushButton("reload");
  progress_ = new QProgressBar;
  progress_->setMaximumWidth(220);
  progress_->setTextVisible(true);
  cancel_ = new QPushButton("Cancel");
  cancel_->setEnabled(false);
  count_ = new QLabel;
  error_ = new QLabel;
  error_->setObjectName("error");
  error_->setStyleSheet("color: #b00020; font-weight: bold");
  error_->setWordWrap(true);
  error_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  error_->hide();

  table_ = new QTableView;
  table_->setModel(model_);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSelectionMode(QAbstractItemView::ExtendedSelection);
  table_->setWordWrap(false);
  table_->verticalHeader()->hide();
  // Fixed row heights: the view then never measures a million rows.
  table_->verticalHeader()->setSectionResizeMode(QHeaderView::Fixed);
  table_->verticalHeader()->setDefaultSectionSize(table_->fontMetrics().height() + 6);
  table_->horizontalHeader()->setSortIndicator(-1, Qt::AscendingOrder);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Interactive);
  table_->horizontalHeader()->setStretchLastSection(true);
  table_->setColumnWidth(KeyTableModel::kKey, 240);
  table_->setColumnWidth(KeyTableModel::kKind, 170);
  table_->setColumnWidth(KeyTableModel::kExpires, 140);
  table_->setColumnWidth(KeyTableModel::kStored, 140);
  table_->setColumnWidth(KeyTableModel::kAccessed, 140);
  table_->setColumnWidth(KeyTableModel::kTimeLeft, 80);
  table_->setSortingEnabled(true);
  viewer_ = new ValueViewer;

  auto* bar = new QHBoxLayout;
  bar->addWidget(filter_, 1);
  bar->addWidget(mode_);
  bar->addWidget(reload_);
  bar->addWidget(progress_);
  bar->addWidget(cancel_);
  groups_view_ = new QTreeView;
  groups_view_->setObjectName("groups");
  groups_view_->setModel(groups_);
  groups_view_->setUniformRowHeights(true);
  groups_view_->setColumnWidth(KeyGroupModel::kGroup, 420);
  groups_view_->setToolTip("Double-click a group to list its keys");
  views_ = new QTabWidget;
  views_->addTab(table_, "Keys");
  views_->addTab(groups_view_, "Groups");
  pages_ = new PagesPanel(gate_);
  pages_->setConfirmer([this](const QString& title, const QString& text) { return confirm_(title, text); });
  views_->addTab(pages_, "Pages");
  connect(pages_, &PagesPanel::pageSelected, this, [this](const std::string& key, const QString& url) {
    viewer_->setPageUrl(key, url);
    viewer_->showKey(region_, key);
  });
  connect(pages_, &PagesPanel::urlFound, viewer_, &ValueViewer::setPageUrl);
  connect(pages_, &PagesPanel::message, this, &KeyBrowser::message);
  connect(pages_, &PagesPanel::regionChanged, this, [this] {
    emit regionChanged();
    reload();
  });
  auto* split = new QSplitter(Qt::Vertical);
  split->addWidget(views_);
  split->addWidget(viewer_);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addLayout(bar);
  layout->addWidget(error_);
  layout->addWidget(count_);
  layout->addWidget(split, 1);

  auto make = [this](const QString& text, QKeySequence key, void (KeyBrowser::*slot)()) {
    auto* a = new QAction(text, this);
    if (!key.isEmpty()) a->setShortcut(key);
    a->setShortcutContext(Qt::WindowShortcut);
    connect(a, &QAction::triggered, this, slot);
    addAction(a);
    return a;
  };
  delete_ = make("Delete selected keys", QKeySequence::Delete, &KeyBrowser::deleteSelected);
  purge_filter_ = make(QString::fromUtf8("Purge keys matching the filter…"), {}, &KeyBrowser::purgeByFilter);
  purge_expired_ = make("Purge expired entries", {}, &KeyBrowser::purgeExpired);
  clear_ = make(QString::fromUtf8("Clear region…"), {}, &KeyBrowser::clearRegion);
  copy_key_ = make("Copy key", QKeySequence::Copy, &KeyBrowser::copyKey);
  copy_key_->setShortcutContext(Qt::WidgetWithChildrenShortcut);
  find_ = new QAction("Filter keys", this);
  find_->setShortcut(QKeySequence::Find);
  connect(find_, &QAction::triggered, this, [this] {
    filter_->setFocus();
    filter_->selectAll();
  });
  addAction(find_);

  filter_timer_ = new QTimer(this);
  filter_timer_->setSingleShot(true);
  filter_timer_->setInterval(400);
  connect(filter_timer_, &QTimer::timeout, this, &KeyBrowser::reload);
  connect(filter_, &QLineEdit::textEdited, filter_timer_, qOverload<>(&QTimer::start));
  connect(filter_, &QLineEdit::returnPressed, this, &KeyBrowser::reload);
  connect(mode_, &QComboBox::currentIndexChanged, this, &KeyBrowser::reload);
  connect(reload_, &QPushButton::clicked, this, &KeyBrowser::reload);
  connect(cancel_, &QPushButton::clicked, this, [this] {
    if (busy()) cancelOperation();
    else loader_->cancel();
  });

  connect(loader_, &KeyLoader::started, this, [this](quint64 estimate) {
    progress_->setRange(0, static_cast<int>(std::min<quint64>(estimate ? estimate : 1, INT_MAX)));
    progress_->setValue(0);
  });
  connect(loader_, &KeyLoader::batchReady, model_, &KeyTableModel::append);
  connect(loader_, &KeyLoader::progress, this, [this](quint64 rows, quint64 scanned, quint64 estimate) {
    quint64 done = currentGlob().empty() ? rows : std::min(scanned, estimate);
    progress_->setValue(static_cast<int>(std::min<quint64>(done, quint64(progress_->maximum()))));
    count_->setText(QString::fromUtf8("%1 keys loaded…").arg(rows));
  });
  connect(loader_, &KeyLoader::finished, this, &KeyBrowser::onLoadFinished);
  connect(groups_view_, &QTreeView::doubleClicked, this, &KeyBrowser::showGroup);
  connect(groups_, &QAbstractItemModel::modelReset, groups_view_, [this] {
    groups_view_->expandToDepth(1);
  });
  connect(table_->selectionModel(), &QItemSelectionModel::selectionChanged, this,
          &KeyBrowser::onSelectionChanged);
  connect(model_, &KeyTableModel::sortingChanged, this, [this](bool busy_sorting) {
    if (busy_sorting) count_->setText(QString::fromUtf8("sorting %1 keys…").arg(model_->rowCount()));
    else count_->setText(QString("%1 keys").arg(model_->rowCount()));
  });

  // Time left counts down in the rows on screen.
  auto* clock = new QTimer(this);
  clock->setInterval(1000);
  connect(clock, &QTimer::timeout, this, [this] {
    if (!table_->isVisible() || model_->rowCount() == 0) return;
    const int first = table_->rowAt(0);
    int last = table_->rowAt(table_->viewport()->height() - 1);
    if (last < 0) last = model_->rowCount() - 1;
    model_->timePassed(first, last);
  });
  clock->start();

  op_timer_ = new QTimer(this);
  op_timer_->setInterval(100);
  connect(op_timer_, &QTimer::timeout, this, [this] {
    if (op_progress_) {
      quint64 v = op_progress_->load();
      if (progress_->maximum() > 0)
        progress_->setValue(static_cast<int>(std::min<quint64>(v, quint64(progress_->maximum()))));
      count_->setText(QString::fromUtf8("%1: %2…").arg(op_what_).arg(v));
    }
  });
  connect(&op_watcher_, &QFutureWatcher<OpResult>::finished, this, [this] {
    op_timer_->stop();
    cancel_->setEnabled(loader_->running());
    progress_->setRange(0, 1);
    progress_->setValue(1);
    auto done = std::move(op_done_);
    op_progress_.reset();
    updateActions();
    if (done) done(op_watcher_.result());
  });
  updateActions();
}

KeyBrowser::~KeyBrowser() {
  if (op_cancel_) *op_cancel_ = true;
  op_watcher_.waitForFinished();
}

std::string KeyBrowser::filterGlob(const QString& text, bool glob_mode) {
  if (text.isEmpty()) return {};
  if (glob_mode) return text.toStdString();
  return "*" + GlobLiteral(text.toStdString()) + "*";
}

std::string KeyBrowser::currentGlob() const {
  return filterGlob(filter_->text(), mode_->currentIndex() == 1);
}

void KeyBrowser::setFilter(const QString& text, bool glob_mode) {
  QSignalBlocker block(mode_);
  filter_->setText(text);
  mode_->setCurrentIndex(glob_mode ? 1 : 0);
  reload();
}

void KeyBrowser::setRegion(RegionPtr region) {
  if (region_ == region) return;
  region_ = std::move(region);
  viewer_->showNothing();
  pages_->setRegion(region_);
  reload();
}

void KeyBrowser::setConfirmer(Confirmer c) { confirm_ = std::move(c); }

void KeyBrowser::reload() {
  filter_timer_->stop();
  error_->hide();
  model_->clear();
  groups_->recompute();
  viewer_->showNothing();
  if (!region_) {
    loader_->cancel();
    count_->setText("no region selected");
    updateActions();
    return;
  }
  count_->setText(QString::fromUtf8("listing %1…").arg(region_->spec().name));
  progress_->setRange(0, 0);  // busy until the worker knows the size
  cancel_->setEnabled(true);
  loader_->start(region_, QString::fromStdString(currentGlob()));
  updateActions();
}

void KeyBrowser::selectFirstWhenListed(regioncache::DjangoKeyKind kind) {
  select_pending_ = true;
  select_kind_ = kind;
}

void KeyBrowser::showGroup(const QModelIndex& index) {
  const QString glob = groups_->data(index, KeyGroupModel::kGlobRole).toString();
  if (glob.isEmpty()) {
    showMessage(QString("no glob lists only the keys of \"%1\"").arg(groups_->group(index)->label));
    return;
  }
  views_->setCurrentWidget(table_);
  setFilter(glob, true);
}

void KeyBrowser::onLoadFinished(bool ok, bool cancelled, const QString& error, quint64 rows) {
  groups_->recompute();
  cancel_->setEnabled(busy());
  progress_->setRange(0, 1);
  progress_->setValue(ok ? 1 : 0);
  if (!ok) {
    showError(error);
    count_->setText(QString("%1 keys (listing failed)").arg(rows));
  } else {
    count_->setText(QString("%1 keys%2").arg(rows).arg(cancelled ? " (listing cancelled)" : ""));
    // Rows that came after a sort was asked for are placed now.
    if (model_->sortColumn() >= 0)
      model_->sort(model_->sortColumn(), table_->horizontalHeader()->sortIndicatorOrder());
  }
  if (select_pending_ && !cancelled && model_->rowCount() > 0) {
    select_pending_ = false;
    // The first rows only: this runs on the UI thread.
    const int scan = std::min(model_->rowCount(), 20000);
    int row = 0;
    for (int r = 0; r < scan; ++r) {
      if (regioncache::ClassifyDjangoKey(model_->entry(r).key).kind == select_kind_) {
        row = r;
        break;
      }
    }
    table_->selectRow(row);
    table_->scrollTo(model_->index(row, 0));
  }
  updateActions();
}

void KeyBrowser::setReadOnly(bool on) {
  gate_->setReadOnly(on);
  pages_->setReadOnly(on);
  updateActions();
}

void KeyBrowser::updateActions() {
  const bool writable = region_ && !gate_->readOnly() && !busy();
  const bool selected = table_->selectionModel() && table_->selectionModel()->hasSelection();
  delete_->setEnabled(writable && selected);
  purge_filter_->setEnabled(writable && !filter_->text().isEmpty());
  purge_expired_->setEnabled(writable);
  clear_->setEnabled(writable);
  copy_key_->setEnabled(selected);
  reload_->setEnabled(region_ != nullptr);
}

void KeyBrowser::onSelectionChanged() {
  updateActions();
  QModelIndex current = table_->selectionModel()->currentIndex();
  QModelIndexList rows = table_->selectionModel()->selectedRows();
  if (rows.isEmpty() || !region_) return;
  QModelIndex show = current.isValid() && table_->selectionModel()->isRowSelected(current.row())
                         ? current : rows.first();
  QByteArray key = model_->data(model_->index(show.row(), 0), KeyTableModel::kRawKeyRole).toByteArray();
  viewer_->showKey(region_, key.toStdString());
  pages_->lookUpUrl(key.toStdString());  // a cached page: its recorded URL, if any
}

void KeyBrowser::showError(const QString& text) {
  last_error_ = text;
  error_->setText(text);
  error_->setVisible(!text.isEmpty());
  emit message(text);
}

void KeyBrowser::showMessage(const QString& text) {
  last_message_ = text;
  emit message(text);
}

void KeyBrowser::runOperation(const QString& what, uint64_t estimate, OpFn fn,
                              std::function<void(const OpResult&)> done) {
  if (busy()) return;
  op_what_ = what;
  op_cancel_ = std::make_shared<std::atomic<bool>>(false);
  op_progress_ = std::make_shared<std::atomic<uint64_t>>(0);
  op_done_ = std::move(done);
  loader_->cancel();
  error_->hide();
  progress_->setRange(0, estimate ? static_cast<int>(std::min<uint64_t>(estimate, INT_MAX)) : 0);
  progress_->setValue(0);
  cancel_->setEnabled(true);
  count_->setText(QString::fromUtf8("%1…").arg(what));
  op_timer_->start();
  op_watcher_.setFuture(QtConcurrent::run([fn, cancel = op_cancel_, prog = op_progress_] {
    return fn(*cancel, [prog](uint64_t n) { prog->store(n); });
  }));
  updateActions();
}

void KeyBrowser::cancelOperation() {
  if (op_cancel_) *op_cancel_ = true;
}

void KeyBrowser::deleteSelected() {
  if (!region_ || busy()) return;
  std::vector<std::string> keys;
  for (const QModelIndex& i : table_->selectionModel()->selectedRows())
    keys.push_back(model_->data(i, KeyTableModel::kRawKeyRole).toByteArray().toStdString());
  if (keys.empty()) return;
  if (gate_->readOnly()) {
    uint64_t none = 0;
    showError(QString::fromStdString(gate_->deleteKeys(*region_, keys, &none).ToString()));
    return;
  }
  RegionPtr region = region_;
  WriteGate* gate = gate_;
  runOperation(QString("deleting %1 keys").arg(keys.size()), keys.size(),
               [region, gate, keys](const std::atomic<bool>&, const std::function<void(uint64_t)>&) {
                 OpResult r;
                 r.status = gate->deleteKeys(*region, keys, &r.count);
                 r.deleted_keys = keys;
                 return r;
               },
               [this, region](const OpResult& r) {
                 if (!r.status.ok()) {
                   showError(StatusText(*region, r.status));
                   emit operationDone(false, last_error_);
                   return;
                 }
                 if (region_ == region) {  // the user may have moved to another region meanwhile
                   model_->removeKeys(r.deleted_keys);
                   groups_->recompute();
                   viewer_->showNothing();
                 }
                 showMessage(QString("deleted %1 of %2 keys from %3")
                                 .arg(r.count).arg(r.deleted_keys.size()).arg(region->spec().name));
                 count_->setText(QString("%1 keys").arg(model_->rowCount()));
                 emit regionChanged();
                 emit operationDone(true, last_message_);
               });
}

void KeyBrowser::purgeByFilter() {
  if (!region_ || busy()) return;
  const std::string glob = currentGlob();
  if (glob.empty()) {
    showError("purge by filter needs a filter; to remove every key use Clear region");
    return;
  }
  RegionPtr region = region_;
  WriteGate* gate = gate_;
  if (gate_->readOnly()) {
    uint64_t none = 0;
    showError(QString::fromStdString(gate_->purgeMatching(*region_, glob, &none, {}).ToString()));
    return;
  }
  // First the preview: how many live keys match; then the question; then the purge.
  runOperation(QString("counting keys matching %1").arg(QString::fromStdString(glob)), 0,
               [region, glob](const std::atomic<bool>& cancel, const std::function<void(uint64_t)>& progress) {
                 OpResult r;
                 r.status = CountMatching(*region, glob, &r.count, [&](uint64_t n) {
                   progress(n);
                   return !cancel.load();
                 });
                 return r;
               },
               [this, region, gate, glob](const OpResult& counted) {
                 if (!counted.status.ok()) {
                   if (counted.status.code() == regioncache::Status::Code::kCancelled)
                     showMessage("purge cancelled");
                   else
                     showError(StatusText(*region, counted.status));
                   emit operationDone(false, counted.status.ToString().c_str());
                   return;
                 }
                 const QString g = QString::fromStdString(glob);
                 if (counted.count == 0) {
                   showMessage(QString("no key of %1 matches %2: nothing to purge").arg(region->spec().name, g));
                   emit operationDone(true, last_message_);
                   return;
                 }
                 if (!confirm_("Purge keys",
                               QString("Delete the %1 keys matching %2 from region '%3' (%4 %5)?")
                                   .arg(counted.count).arg(g, region->spec().name, region->spec().kind,
                                                           region->spec().location))) {
                   showMessage("purge cancelled");
                   emit operationDone(false, last_message_);
                   return;
                 }
                 runOperation(QString("purging keys matching %1").arg(g), counted.count,
                              [region, gate, glob](const std::atomic<bool>& cancel,
                                                   const std::function<void(uint64_t)>& progress) {
                                OpResult r;
                                r.status = gate->purgeMatching(*region, glob, &r.count, [&](uint64_t n) {
                                  progress(n);
                                  return !cancel.load();
                                });
                                return r;
                              },
                              [this, region, g](const OpResult& r) {
                                finishWrite(*region, r, QString("purged %1 keys matching %2 from %3")
                                                            .arg(r.count).arg(g, region->spec().name));
                              });
               });
}

void KeyBrowser::purgeExpired() {
  if (!region_ || busy()) return;
  RegionPtr region = region_;
  WriteGate* gate = gate_;
  if (gate_->readOnly()) {
    uint64_t none = 0;
    showError(QString::fromStdString(gate_->purgeExpired(*region_, &none).ToString()));
    return;
  }
  runOperation("purging expired entries", 0,
               [region, gate](const std::atomic<bool>&, const std::function<void(uint64_t)>&) {
                 OpResult r;
                 r.status = gate->purgeExpired(*region, &r.count);
                 return r;
               },
               [this, region](const OpResult& r) {
                 finishWrite(*region, r,
                             QString("purged %1 expired entries from %2").arg(r.count).arg(region->spec().name));
               });
}

void KeyBrowser::clearRegion() {
  if (!region_ || busy()) return;
  RegionPtr region = region_;
  WriteGate* gate = gate_;
  if (gate_->readOnly()) {
    showError(QString::fromStdString(gate_->clear(*region_).ToString()));
    return;
  }
  const RegionSpec& s = region->spec();
  if (!confirm_("Clear region", QString("Remove EVERY entry of region '%1' (%2 %3)? Every process "
                                        "using it loses its cached data.")
                                    .arg(s.name, s.kind, s.location))) {
    showMessage("clear cancelled");
    return;
  }
  runOperation(QString("clearing %1").arg(s.name), 0,
               [region, gate](const std::atomic<bool>&, const std::function<void(uint64_t)>&) {
                 OpResult r;
                 r.status = gate->clear(*region);
                 return r;
               },
               [this, region](const OpResult& r) {
                 finishWrite(*region, r, QString("cleared region %1").arg(region->spec().name));
               });
}

void KeyBrowser::finishWrite(const Region& region, const OpResult& r, const QString& done_text) {
  if (r.status.ok()) showMessage(done_text);
  else showError(StatusText(region, r.status));
  emit regionChanged();
  reload();
  pages_->invalidate();
  emit operationDone(r.status.ok(), r.status.ok() ? last_message_ : last_error_);
}

void KeyBrowser::copyKey() {
  QStringList keys;
  for (const QModelIndex& i : table_->selectionModel()->selectedRows())
    keys << model_->data(i, Qt::DisplayRole).toString();
  if (keys.isEmpty()) return;
  QApplication::clipboard()->setText(keys.join('\n'));
  showMessage(keys.size() == 1 ? QString("copied %1").arg(keys.first())
                               : QString("copied %1 keys").arg(keys.size()));
}

}  // namespace rcgui
