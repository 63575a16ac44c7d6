#include "main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QFile>
#include <QFileDialog>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QStatusBar>
#include <QTableView>
#include <QTimer>
#include <QToolBar>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "key_browser.h"
#include "source_dialogs.h"
#include "stats_chart.h"

namespace rcgui {

namespace {
constexpr int kMaxRecent = 10;
const char* kRecentKey = "recentSources";

struct RemoteRegions {
  bool ok = false;
  QList<RegionSpec> specs;
  QString error;
};
}  // namespace

MainWindow::MainWindow(bool read_only, QWidget* parent) : QMainWindow(parent), gate_(read_only) {
  // Read-only reaches the stores too: a shared-memory region is then mapped
  // read-only and never repaired by the app (Region::acquire reopens it).
  SetStoresReadOnly(read_only);
  setWindowTitle("regioncache");
  regions_ = new RegionListModel(this);
  region_view_ = new QTableView;
  region_view_->setObjectName("regions");
  region_view_->setModel(regions_);
  region_view_->setSelectionBehavior(QAbstractItemView::SelectRows);
  region_view_->setSelectionMode(QAbstractItemView::SingleSelection);
  region_view_->verticalHeader()->hide();
  region_view_->horizontalHeader()->setStretchLastSection(true);
  region_view_->setWordWrap(false);
  chart_ = new StatsChart;
  browser_ = new KeyBrowser(&gate_);
  source_error_ = new QLabel;
  source_error_->setObjectName("sourceError");
  source_error_->setStyleSheet("color: #b00020");
  source_error_->setWordWrap(true);
  source_error_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  source_error_->hide();

  left_split_ = new QSplitter(Qt::Vertical);
  left_split_->addWidget(region_view_);
  left_split_->addWidget(chart_);
  left_split_->setStretchFactor(0, 3);
  left_split_->setStretchFactor(1, 1);
  split_ = new QSplitter(Qt::Horizontal);
  split_->addWidget(left_split_);
  split_->addWidget(browser_);
  split_->setStretchFactor(0, 2);
  split_->setStretchFactor(1, 3);
  split_->setSizes({560, 840});  // until the saved layout is restored
  auto* central = new QWidget;
  auto* layout = new QVBoxLayout(central);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addWidget(source_error_);
  layout->addWidget(split_, 1);
  setCentralWidget(central);

  describer_ = new DjangoDescriber(this);
  refresh_timer_ = new QTimer(this);
  connect(refresh_timer_, &QTimer::timeout, regions_, &RegionListModel::refresh);
  buildMenus();

  connect(region_view_->selectionModel(), &QItemSelectionModel::selectionChanged, this,
          &MainWindow::onRegionSelected);
  connect(regions_, &RegionListModel::refreshed, this, &MainWindow::updateChart);
  connect(regions_, &RegionListModel::refreshed, this, &MainWindow::updateRemoteErrors);
  connect(regions_, &RegionListModel::refreshed, this, [this] {
    // Fit the columns when regions were added, not on every refresh (the user may have resized).
    if (regions_->rowCount() == sized_rows_) return;
    sized_rows_ = regions_->rowCount();
    for (int c = 0; c < RegionListModel::kStatus; ++c) region_view_->resizeColumnToContents(c);
  });
  connect(browser_, &KeyBrowser::regionChanged, regions_, &RegionListModel::refresh);
  // Django's spec replaced a discovered one: the browser moves to it if it showed that row.
  connect(regions_, &RegionListModel::regionReplaced, this, [this](int row) {
    const QModelIndexList rows = region_view_->selectionModel()->selectedRows();
    if (!rows.isEmpty() && rows.first().row() == row) onRegionSelected();
  });
  connect(regions_, &QAbstractItemModel::rowsInserted, this, &MainWindow::openPending);
  connect(regions_, &RegionListModel::regionReplaced, this, &MainWindow::openPending);
  connect(browser_, &KeyBrowser::message, this, [this](const QString& t) { statusBar()->showMessage(t, 10000); });
  connect(describer_, &DjangoDescriber::done, this,
          [this](bool ok, const QList<RegionSpec>& specs, const QString& error) {
            if (!ok) {
              showSourceError(error);
              emit sourceDone(false, error);
              return;
            }
            remember(pending_django_);
            int added = regions_->addRegions(specs);
            QString text = QString("%1: %2 regions (%3 new)").arg(pending_django_.label()).arg(specs.size()).arg(added);
            statusBar()->showMessage(text, 10000);
            regions_->refresh();
            if (region_view_->selectionModel()->selectedRows().isEmpty() && regions_->rowCount() > 0)
              selectRegion(regions_->rowOf(specs.isEmpty() ? QString() : specs.first().Identity()));
            emit sourceDone(true, text);
          });
  restoreSettings();
  browser_->setReadOnly(gate_.readOnly());
}

MainWindow::~MainWindow() {
  // A call to a silent agent would hold the workers the models wait for
  // until its deadline: the agents go first, and those calls end at once.
  for (const auto& [key, client] : remotes_) client->Shutdown();
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu("&Sources");
  file->addAction(QString::fromUtf8("Open &Django project…"), this, [this] {
    DjangoProjectDialog dlg(pending_django_.django, this);
    if (dlg.exec() == QDialog::Accepted) openDjangoProject(dlg.project());
  });
  file->addAction(QString::fromUtf8("Open regions &JSON file…"), this, [this] {
    QString path = QFileDialog::getOpenFileName(this, "Regions JSON", QString(), "JSON (*.json);;All files (*)");
    if (!path.isEmpty()) openJsonFile(path);
  });
  file->addAction(QString::fromUtf8("Add region by &hand…"), this, [this] {
    ManualRegionDialog dlg(this);
    if (dlg.exec() != QDialog::Accepted) return;
    RegionSpec spec;
    QString error;
    if (!dlg.spec(&spec, &error)) return showSourceError(error);
    addRegion(spec);
  });
  file->addAction(QString::fromUtf8("Open &remote site…"), this, [this] {
    RemoteSiteDialog dlg(last_remote_, this);
    if (dlg.exec() == QDialog::Accepted) openRemote(dlg.site());
  });
  file->addAction("Find my &shared-memory regions", this, &MainWindow::discoverShm);
  recent_menu_ = file->addMenu("&Recent sources");
  file->addSeparator();
  file->addAction("Remove region from list", this, [this] {
    QModelIndexList rows = region_view_->selectionModel()->selectedRows();
    if (!rows.isEmpty()) regions_->removeRegion(rows.first().row());
  });
  file->addSeparator();
  file->addAction("&Quit", QKeySequence::Quit, this, &QWidget::close);

  QMenu* region = menuBar()->addMenu("&Region");
  region->addAction(browser_->findAction());
  region->addAction(browser_->copyKeyAction());
  region->addSeparator();
  region->addAction(browser_->deleteAction());
  region->addAction(browser_->purgeFilterAction());
  region->addAction(browser_->purgeExpiredAction());
  region->addAction(browser_->clearAction());

  QMenu* view = menuBar()->addMenu("&View");
  refresh_ = new QAction("&Refresh", this);
  refresh_->setShortcuts({QKeySequence(Qt::Key_F5), QKeySequence(Qt::CTRL | Qt::Key_R)});
  connect(refresh_, &QAction::triggered, this, &MainWindow::refreshAll);
  view->addAction(refresh_);
  auto_refresh_ = new QAction("&Auto-refresh", this);
  auto_refresh_->setCheckable(true);
  connect(auto_refresh_, &QAction::toggled, this, [this](bool on) { setAutoRefresh(on, interval_->value()); });
  view->addAction(auto_refresh_);
  read_only_ = new QAction("Read-&only mode", this);
  read_only_->setCheckable(true);
  read_only_->setChecked(gate_.readOnly());
  connect(read_only_, &QAction::toggled, this, &MainWindow::setReadOnly);
  view->addAction(read_only_);

  interval_ = new QSpinBox;
  interval_->setRange(1, 3600);
  interval_->setValue(5);
  interval_->setSuffix(" s");
  interval_->setToolTip("auto-refresh interval");
  connect(interval_, &QSpinBox::valueChanged, this, [this](int s) {
    if (auto_refresh_->isChecked()) setAutoRefresh(true, s);
  });
  QToolBar* bar = addToolBar("Main");
  bar->setObjectName("mainToolBar");
  bar->addAction(refresh_);
  bar->addAction(auto_refresh_);
  bar->addWidget(interval_);
  bar->addSeparator();
  bar->addAction(read_only_);
  bar->addSeparator();
  bar->addAction(browser_->purgeExpiredAction());
  bar->addAction(browser_->clearAction());
  rebuildRecentMenu();
}

void MainWindow::setReadOnly(bool on) {
  SetStoresReadOnly(on);
  browser_->setReadOnly(on);
  if (read_only_->isChecked() != on) read_only_->setChecked(on);
  setWindowTitle(on ? "regioncache (read-only)" : "regioncache");
}

void MainWindow::setAutoRefresh(bool on, int interval_s) {
  if (interval_->value() != interval_s) interval_->setValue(interval_s);
  if (auto_refresh_->isChecked() != on) auto_refresh_->setChecked(on);
  if (on) {
    refresh_timer_->start(interval_s * 1000);
    regions_->refresh();
  } else {
    refresh_timer_->stop();
  }
}

void MainWindow::refreshAll() {
  for (const auto& [key, client] : remotes_) client->AllowReconnect();
  regions_->refresh();
  browser_->reload();
}

void MainWindow::selectRegion(int row) {
  if (row < 0 || row >= regions_->rowCount()) return;
  region_view_->selectionModel()->select(regions_->index(row, 0),
                                         QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
  region_view_->setCurrentIndex(regions_->index(row, 0));
}

void MainWindow::openWhenListed(const QString& region_name) {
  pending_open_ = region_name;
  openPending();
}

void MainWindow::openPending() {
  if (pending_open_.isEmpty()) return;
  for (int row = 0; row < regions_->rowCount(); ++row) {
    if (regions_->region(row)->spec().name != pending_open_) continue;
    pending_open_.clear();
    browser_->selectFirstWhenListed(regioncache::DjangoKeyKind::kPage);
    selectRegion(row);
    return;
  }
}

void MainWindow::onRegionSelected() {
  QModelIndexList rows = region_view_->selectionModel()->selectedRows();
  browser_->setRegion(rows.isEmpty() ? nullptr : regions_->region(rows.first().row()));
  updateChart();
}

void MainWindow::updateChart() {
  QModelIndexList rows = region_view_->selectionModel()->selectedRows();
  if (rows.isEmpty()) return chart_->setSeries(QString(), {});
  const RegionRow& r = regions_->row(rows.first().row());
  chart_->setSeries(QString("%1 — fill and hit ratio").arg(r.region->spec().name), r.history);
}

QString MainWindow::sourceError() const { return source_error_->isVisible() ? source_error_->text() : QString(); }

void MainWindow::showSourceError(const QString& text) {
  source_error_->setText(text);
  source_error_->setVisible(!text.isEmpty());
  if (!text.isEmpty()) statusBar()->showMessage(text, 15000);
}

void MainWindow::openDjangoProject(const DjangoProject& project) {
  pending_django_.type = SourceRef::Type::kDjango;
  pending_django_.django = project;
  showSourceError(QString());
  statusBar()->showMessage(QString::fromUtf8("asking %1 for its regions…").arg(project.settings));
  describer_->Start(project);
}

void MainWindow::openJsonFile(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) {
    QString e = QString("cannot read %1: %2").arg(path, f.errorString());
    showSourceError(e);
    emit sourceDone(false, e);
    return;
  }
  QList<RegionSpec> specs;
  QString error;
  if (!ParseRegionsJson(f.readAll(), path, &specs, &error)) {
    showSourceError(error);
    emit sourceDone(false, error);
    return;
  }
  SourceRef ref;
  ref.type = SourceRef::Type::kJsonFile;
  ref.path = path;
  remember(ref);
  showSourceError(QString());
  int added = regions_->addRegions(specs);
  regions_->refresh();
  if (region_view_->selectionModel()->selectedRows().isEmpty() && !specs.isEmpty())
    selectRegion(regions_->rowOf(specs.first().Identity()));
  QString text = QString("%1: %2 regions (%3 new)").arg(path).arg(specs.size()).arg(added);
  statusBar()->showMessage(text, 10000);
  emit sourceDone(true, text);
}

void MainWindow::addRegion(const RegionSpec& spec) {
  SourceRef ref;
  ref.type = SourceRef::Type::kManual;
  ref.manual = spec;
  remember(ref);
  regions_->addRegions({spec});
  regions_->refresh();
  selectRegion(regions_->rowOf(spec.Identity()));
  emit sourceDone(true, spec.Identity());
}

void MainWindow::discoverShm() {
  QList<RegionSpec> specs;
  QString error;
  if (!DiscoverShmRegions(&specs, &error)) {
    showSourceError(error);
    emit sourceDone(false, error);
    return;
  }
  int added = regions_->addRegions(specs);
  regions_->refresh();
  QString text = QString("%1 shared-memory regions of this user (%2 new)").arg(specs.size()).arg(added);
  statusBar()->showMessage(text, 10000);
  emit sourceDone(true, text);
}

void MainWindow::openSource(const SourceRef& ref) {
  switch (ref.type) {
    case SourceRef::Type::kDjango: return openDjangoProject(ref.django);
    case SourceRef::Type::kJsonFile: return openJsonFile(ref.path);
    case SourceRef::Type::kManual: return addRegion(ref.manual);
    case SourceRef::Type::kRemote: return openRemote(ref.remote);
  }
}

std::shared_ptr<AgentClient> MainWindow::remoteClient(const QString& site_key) const {
  auto it = remotes_.find(site_key);
  return it == remotes_.end() ? nullptr : it->second;
}

void MainWindow::openRemote(const RemoteSite& site) {
  std::shared_ptr<AgentClient>& slot = remotes_[site.key()];
  if (!slot) slot = std::make_shared<AgentClient>(site.Command());
  slot->AllowReconnect();
  std::shared_ptr<AgentClient> client = slot;
  last_remote_ = site;
  showSourceError(QString());
  statusBar()->showMessage(QString::fromUtf8("starting the agent of %1 (%2)…").arg(site.label(), site.settings));
  auto* watcher = new QFutureWatcher<RemoteRegions>(this);
  connect(watcher, &QFutureWatcher<RemoteRegions>::finished, this, [this, watcher, site] {
    const RemoteRegions got = watcher->result();
    watcher->deleteLater();
    if (!got.ok) {
      showSourceError(got.error);
      emit sourceDone(false, got.error);
      return;
    }
    SourceRef ref;
    ref.type = SourceRef::Type::kRemote;
    ref.remote = site;
    remember(ref);
    const int added = regions_->addRegions(got.specs);
    const QString text = QString("%1: %2 regions (%3 new)").arg(ref.label()).arg(got.specs.size()).arg(added);
    statusBar()->showMessage(text, 10000);
    regions_->refresh();
    if (region_view_->selectionModel()->selectedRows().isEmpty() && !got.specs.isEmpty())
      selectRegion(regions_->rowOf(got.specs.first().Identity()));
    emit sourceDone(true, text);
  });
  watcher->setFuture(QtConcurrent::run([site, client] {
    RemoteRegions r;
    r.ok = FetchRemoteRegions(site, client, &r.specs, &r.error);
    return r;
  }));
}

void MainWindow::updateRemoteErrors() {
  QStringList lost;
  for (const auto& [key, client] : remotes_) {
    const QString text = client->LostText();
    if (!text.isEmpty()) lost << text + " (refresh to reconnect)";
  }
  const QString text = lost.join('\n');
  if (!text.isEmpty()) {
    if (text != remote_error_shown_) showSourceError(text);
    remote_error_shown_ = text;
  } else if (!remote_error_shown_.isEmpty()) {
    if (sourceError() == remote_error_shown_) showSourceError(QString());
    remote_error_shown_.clear();
  }
}

QStringList MainWindow::recentSources() const {
  return QSettings().value(kRecentKey).toStringList();
}

void MainWindow::remember(const SourceRef& ref) {
  QSettings settings;
  QStringList list = settings.value(kRecentKey).toStringList();
  const QString code = ref.encode();
  list.removeAll(code);
  list.prepend(code);
  while (list.size() > kMaxRecent) list.removeLast();
  settings.setValue(kRecentKey, list);
  rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
  recent_menu_->clear();
  for (const QString& code : recentSources()) {
    SourceRef ref;
    if (!SourceRef::decode(code, &ref)) continue;
    recent_menu_->addAction(ref.label(), this, [this, ref] { openSource(ref); });
  }
  recent_menu_->setEnabled(!recent_menu_->isEmpty());
}

void MainWindow::saveSettings() {
  QSettings s;
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
  s.setValue("window/split", split_->saveState());
  s.setValue("window/leftSplit", left_split_->saveState());
  s.setValue("refresh/auto", auto_refresh_->isChecked());
  s.setValue("refresh/interval", interval_->value());
}

void MainWindow::restoreSettings() {
  QSettings s;
  restoreGeometry(s.value("window/geometry").toByteArray());
  restoreState(s.value("window/state").toByteArray());
  split_->restoreState(s.value("window/split").toByteArray());
  left_split_->restoreState(s.value("window/leftSplit").toByteArray());
  interval_->setValue(s.value("refresh/interval", 5).toInt());
  if (s.value("refresh/auto", false).toBool()) setAutoRefresh(true, interval_->value());
}

void MainWindow::closeEvent(QCloseEvent* event) {
  saveSettings();
  event->accept();
}

}  // namespace rcgui
