// The keys of one region: filter, the key table (loaded in pages on a
// worker), the value viewer, and the write actions (delete, purge by filter,
// purge expired, clear), each run on a worker with progress and cancel and
// each passing through the WriteGate, which refuses them in read-only mode.
#pragma once

#include <QFutureWatcher>
#include <QWidget>
#include <atomic>
#include <functional>
#include <memory>

#include "key_groups.h"
#include "key_loader.h"
#include "key_table_model.h"
#include "region.h"
#include "regioncache/django_keys.h"
#include "write_gate.h"

class QAction;
class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QTableView;
class QTabWidget;
class QTreeView;
class QTimer;

namespace rcgui {

class PagesPanel;
class ValueViewer;

class KeyBrowser : public QWidget {
  Q_OBJECT

 public:
  // Asks the user to confirm a destructive action; the text names it. Tests
  // replace the default (a message box) to answer without a human.
  using Confirmer = std::function<bool(const QString& title, const QString& text)>;

  KeyBrowser(WriteGate* gate, QWidget* parent = nullptr);
  ~KeyBrowser() override;

  void setRegion(RegionPtr region);
  RegionPtr region() const { return region_; }
  void reload();                 // lists the keys again with the current filter
  void setReadOnly(bool on);     // enables or disables every write action
  void setConfirmer(Confirmer c);

  // "*foo*" for substring "foo" (glob characters in it escaped), the text as
  // is for a glob, "" for an empty filter.
  static std::string filterGlob(const QString& text, bool glob_mode);
  std::string currentGlob() const;
  void setFilter(const QString& text, bool glob_mode);

  // The actions (also in the main window's menus).
  QAction* deleteAction() const { return delete_; }
  QAction* purgeFilterAction() const { return purge_filter_; }
  QAction* purgeExpiredAction() const { return purge_expired_; }
  QAction* clearAction() const { return clear_; }
  QAction* copyKeyAction() const { return copy_key_; }
  QAction* findAction() const { return find_; }

  // The same operations without their dialogs' questions (the confirmer is
  // still asked for the destructive ones). Each runs on a worker; done()
  // follows with the outcome.
  void deleteSelected();
  void purgeByFilter();
  void purgeExpired();
  void clearRegion();
  void copyKey();
  void cancelOperation();

  KeyTableModel* model() const { return model_; }
  // The keys by namespace (prefix, version, kind, name), in the "Groups" tab;
  // regrouped on a worker whenever a listing ends or rows are removed.
  KeyGroupModel* groups() const { return groups_; }
  QTreeView* groupsView() const { return groups_view_; }
  QTabWidget* views() const { return views_; }
  // The cached pages by URL (the "Pages" tab): selecting one shows it here.
  PagesPanel* pages() const { return pages_; }
  // Once the current or next listing ends, selects its first key of this
  // kind (else its first key), showing its value.
  void selectFirstWhenListed(regioncache::DjangoKeyKind kind);
  // Lists the keys of a group (its glob as the filter) in the table.
  void showGroup(const QModelIndex& index);
  QTableView* table() const { return table_; }
  ValueViewer* viewer() const { return viewer_; }
  KeyLoader* loader() const { return loader_; }
  bool busy() const { return op_watcher_.isRunning(); }
  QString lastMessage() const { return last_message_; }
  QString lastError() const { return last_error_; }

 signals:
  void message(const QString& text);   // status-bar text
  void regionChanged();                // a write changed the region (stats are stale)
  void operationDone(bool ok, const QString& text);

 private:
  struct OpResult {
    regioncache::Status status;
    uint64_t count = 0;
    std::vector<std::string> deleted_keys;
  };
  using OpFn = std::function<OpResult(const std::atomic<bool>& cancel,
                                      const std::function<void(uint64_t)>& progress)>;
  // Runs fn on a worker with the progress bar and Cancel; then calls done on
  // the UI thread.
  void runOperation(const QString& what, uint64_t estimate, OpFn fn,
                    std::function<void(const OpResult&)> done);
  // The end of a purge or clear: says how it went (done_text when it
  // succeeded), tells the region changed and lists the keys again.
  void finishWrite(const Region& region, const OpResult& r, const QString& done_text);
  void showError(const QString& text);
  void showMessage(const QString& text);
  void updateActions();
  void onSelectionChanged();
  void onLoadFinished(bool ok, bool cancelled, const QString& error, quint64 rows);

  WriteGate* gate_;
  RegionPtr region_;
  Confirmer confirm_;
  KeyTableModel* model_;
  KeyGroupModel* groups_;
  QTabWidget* views_;
  QTreeView* groups_view_;
  PagesPanel* pages_;
  KeyLoader* loader_;
  QLineEdit* filter_;
  QComboBox* mode_;
  QPushButton* reload_;
  QProgressBar* progress_;
  QPushButton* cancel_;
  QLabel* count_;
  QLabel* error_;
  QTableView* table_;
  ValueViewer* viewer_;
  QTimer* filter_timer_;
  QAction *delete_, *purge_filter_, *purge_expired_, *clear_, *copy_key_, *find_;

  QFutureWatcher<OpResult> op_watcher_;
  std::shared_ptr<std::atomic<bool>> op_cancel_;
  std::shared_ptr<std::atomic<uint64_t>> op_progress_;
  QTimer* op_timer_;
  std::function<void(const OpResult&)> op_done_;
  QString op_what_;
  QString last_message_, last_error_;
  bool select_pending_ = false;  // selectFirstWhenListed
  regioncache::DjangoKeyKind select_kind_ = regioncache::DjangoKeyKind::kPlain;
};

}  // namespace rcgui
