// The main window: sources of regions (menus, recent list), the region list
// with its chart and auto-refresh, and the key browser of the region chosen.
// Remembers its geometry, splitters, refresh settings and recent sources.
#pragma once

#include <QMainWindow>
#include <map>
#include <memory>

#include "django_describer.h"
#include "region_list_model.h"
#include "remote_store.h"
#include "source_ref.h"
#include "write_gate.h"

class QAction;
class QLabel;
class QMenu;
class QSpinBox;
class QSplitter;
class QTableView;
class QTimer;

namespace rcgui {

class KeyBrowser;
class StatsChart;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(bool read_only = false, QWidget* parent = nullptr);
  ~MainWindow() override;

  // Sources. Each adds its regions to the list (no duplicates) and records
  // itself in the recent sources; failures show in the window and in
  // sourceDone().
  void openDjangoProject(const DjangoProject& project);
  void openJsonFile(const QString& path);
  void addRegion(const RegionSpec& spec);
  void discoverShm();
  void openSource(const SourceRef& ref);
  // A remote site: starts its agent (off the UI thread) and lists its
  // regions; a site opened again reuses its connection.
  void openRemote(const RemoteSite& site);
  // The connection of a remote site opened here (RemoteSite::key()), or null.
  std::shared_ptr<AgentClient> remoteClient(const QString& site_key) const;

  void setReadOnly(bool on);
  bool readOnly() const { return gate_.readOnly(); }
  void setAutoRefresh(bool on, int interval_s);
  // F5 / Ctrl+R: stats of every region and the keys shown; a remote site
  // whose connection was lost is started again at once.
  void refreshAll();
  void selectRegion(int row);
  // Selects the region of this name (a CACHES alias once a Django project
  // lists it) as soon as a source lists it, and in it the first cached page
  // (else the first key) once its keys are listed. The demo opens so.
  void openWhenListed(const QString& region_name);

  RegionListModel* regions() const { return regions_; }
  QTableView* regionView() const { return region_view_; }
  KeyBrowser* browser() const { return browser_; }
  StatsChart* chart() const { return chart_; }
  QString sourceError() const;
  QAction* readOnlyAction() const { return read_only_; }
  QAction* refreshAction() const { return refresh_; }
  QStringList recentSources() const;

 signals:
  void sourceDone(bool ok, const QString& text);

 protected:
  void closeEvent(QCloseEvent* event) override;

 private:
  void buildMenus();
  void remember(const SourceRef& ref);
  void rebuildRecentMenu();
  void showSourceError(const QString& text);
  void onRegionSelected();
  void openPending();
  void updateChart();
  void updateRemoteErrors();  // a lost connection in the window's source error
  void saveSettings();
  void restoreSettings();

  WriteGate gate_;
  RegionListModel* regions_;
  QTableView* region_view_;
  QString pending_open_;  // openWhenListed's region, until a source lists it
  StatsChart* chart_;
  KeyBrowser* browser_;
  QSplitter* split_;
  QSplitter* left_split_;
  QLabel* source_error_;
  QTimer* refresh_timer_;
  QSpinBox* interval_;
  QAction* auto_refresh_;
  QAction* read_only_;
  QAction* refresh_;
  QMenu* recent_menu_;
  DjangoDescriber* describer_;
  SourceRef pending_django_;
  RemoteSite last_remote_;  // the Remote site dialog's last values
  std::map<QString, std::shared_ptr<AgentClient>> remotes_;  // by RemoteSite::key()
  QString remote_error_shown_;
  int sized_rows_ = 0;  // region rows the columns were last fitted to
};

}  // namespace rcgui
