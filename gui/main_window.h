// The main window: sources of regions (menus, recent list), the region list
// with its chart and auto-refresh, and the key browser of the region chosen.
// Remembers its geometry, splitters, refresh settings and recent sources.
#pragma once

#include <QMainWindow>

#include "django_describer.h"
#include "region_list_model.h"
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
  void OpenDjangoProject(const DjangoProject& project);
  void OpenJsonFile(const QString& path);
  void AddRegion(const RegionSpec& spec);
  void DiscoverShm();
  void OpenSource(const SourceRef& ref);

  void SetReadOnly(bool on);
  bool readOnly() const { return gate_.read_only(); }
  void SetAutoRefresh(bool on, int interval_s);
  void RefreshAll();        // F5 / Ctrl+R: stats of every region and the keys shown
  void SelectRegion(int row);

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
  void BuildMenus();
  void Remember(const SourceRef& ref);
  void RebuildRecentMenu();
  void ShowSourceError(const QString& text);
  void OnRegionSelected();
  void UpdateChart();
  void SaveSettings();
  void RestoreSettings();

  WriteGate gate_;
  RegionListModel* regions_;
  QTableView* region_view_;
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
  int sized_rows_ = 0;  // region rows the columns were last fitted to
};

}  // namespace rcgui
