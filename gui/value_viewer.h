// Shows one entry's value: as text, hex, pretty JSON, a picture, a pickle's
// opcode listing, its tree, or a cached Django page (a pickle is never
// unpickled: the tree and the page come from core's restricted reader). The value is read (Peek: no hit counted)
// and rendered on a worker; views of a huge value show its first kCap bytes
// until "Load all" is pressed.
#pragma once

#include <QFutureWatcher>
#include <QImage>
#include <QWidget>
#include <string>

#include "page_view.h"
#include "pickle_tree_view.h"
#include "region.h"
#include "value_decoder.h"

class QLabel;
class QPlainTextEdit;
class QPushButton;
class QScrollArea;
class QTabWidget;

namespace rcgui {

struct RenderedValue {
  bool ok = false;
  QString error;        // the read failed (key gone, region unreachable): shown instead
  QString summary;      // "1.2 KiB str, expires ...", shown above the views
  QString text, hex, json, pickle;
  QImage image;
  QString image_info;
  ValueView best = ValueView::kHex;
  uint64_t total = 0;   // decoded bytes
  bool capped = false;  // views show only the first kCap bytes
  PickleRows tree;      // a pickle read by the restricted machine (nothing run)
  QString tree_note;    // why it could not be read as a tree, or that rows were cut
  PageRendered page;    // a pickled Django response: the Page view, shown first
};

class ValueViewer : public QWidget {
  Q_OBJECT

 public:
  static constexpr qsizetype kCap = 256 * 1024;

  explicit ValueViewer(QWidget* parent = nullptr);
  ~ValueViewer() override;

  // Reads and shows region's entry under key; replaces what was shown.
  void showKey(RegionPtr region, const std::string& key);
  void showNothing();
  void loadAll();  // renders the whole value of the entry shown
  // The URL recorded for the page under key (the Pages tab knows it): shown
  // above the Page view while that key is shown.
  void setPageUrl(const std::string& key, const QString& url);
  QString pageUrlText() const;

  // True from showKey/loadAll until the value is on screen (the worker may
  // be done while its result waits in the event queue).
  bool busy() const { return waiting_; }
  const RenderedValue& rendered() const { return shown_; }
  // The view of the current tab (the Tree and Page tabs count as kPickle).
  ValueView currentView() const;
  QString currentTabName() const;
  PickleTreeView* treeView() const { return tree_; }
  PageView* pageView() const { return page_; }

 signals:
  void loaded();  // the entry asked for last is shown (or its error)

 private:
  void startRender();  // renders key_ of region_, whole if want_all_
  void showRendered(const RenderedValue& v);

  RegionPtr region_;
  std::string key_;
  uint64_t generation_ = 0, watched_generation_ = 0;
  QFutureWatcher<RenderedValue> watcher_;
  RenderedValue shown_;
  bool waiting_ = false;
  bool want_all_ = false;

  QLabel* summary_;
  QLabel* url_;
  std::string url_key_;
  QString url_text_;
  QTabWidget* tabs_;
  QPlainTextEdit* text_;
  QPlainTextEdit* hex_;
  QPlainTextEdit* json_;
  QPlainTextEdit* pickle_;
  PickleTreeView* tree_;
  PageView* page_;
  QScrollArea* image_area_;
  QLabel* image_;
  QLabel* cap_note_;
  QPushButton* load_all_;
};

// The rendering itself, exposed for tests: reads key from region (Peek) and
// builds every view, the text views capped to cap bytes (0: no cap).
RenderedValue RenderValue(Region& region, const std::string& key, qsizetype cap);

}  // namespace rcgui
