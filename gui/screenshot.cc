#include "screenshot.h"

#include <QDir>
#include <QPixmap>
#include <QTableView>
#include <functional>

#include "key_browser.h"
#include "key_table_model.h"
#include "main_window.h"
#include "page_index.h"
#include "run_events.h"
#include "value_viewer.h"

namespace rcgui {

namespace {

bool WaitFor(const std::function<bool()>& done, int timeout_ms) { return RunEventsUntil(done, timeout_ms, 20); }

}  // namespace

QStringList TakeScreenshots(MainWindow* w, const QString& dir, QString* error) {
  QDir().mkpath(dir);
  QStringList written;
  auto save = [&](const QString& name) {
    const QString path = QDir(dir).filePath(name);
    if (!w->grab().save(path)) {
      *error = "cannot write " + path;
      return false;
    }
    written << path;
    return true;
  };
  KeyBrowser* b = w->browser();
  if (!WaitFor([&] { return w->regions()->rowCount() > 0; }, 30000)) {
    *error = "no region to show (" + w->sourceError() + ")";
    return {};
  }
  // Samples a few seconds apart so the chart has lines.
  for (int i = 0; i < 12; ++i) {
    w->regions()->refresh();
    WaitFor([&] { return !w->regions()->refreshing(); }, 10000);
    WaitFor([] { return false; }, 250);
  }

  if (!WaitFor([&] { return !b->loader()->running() && !b->model()->sorting(); }, 30000)) {
    *error = "keys did not load within 30 s";
    return {};
  }
  QTableView* table = b->table();
  if (b->model()->rowCount() > 0) table->selectRow(0);
  WaitFor([&] { return !b->viewer()->busy(); }, 10000);
  if (!save("main-window.png")) return {};

  struct Wanted {
    ValueView view;
    const char* file;
    bool done = false;
  };
  Wanted wanted[] = {{ValueView::kJson, "value-json.png"},
                     {ValueView::kImage, "value-image.png"},
                     {ValueView::kPickle, "value-pickle.png"},
                     {ValueView::kHex, "value-hex.png"}};
  const int rows = std::min(b->model()->rowCount(), 500);
  for (int row = 0; row < rows; ++row) {
    table->selectRow(row);
    WaitFor([&] { return !b->viewer()->busy(); }, 10000);
    WaitFor([] { return false; }, 30);
    for (Wanted& want : wanted) {
      if (want.done || b->viewer()->rendered().best != want.view) continue;
      if (!save(want.file)) return {};
      want.done = true;
    }
  }
  // The Pages tab with a cached page selected (its URL, status and body in
  // the Page view), when the region holds recorded pages.
  PagesPanel* pages = b->pages();
  b->views()->setCurrentWidget(pages);
  if (!WaitFor([&] { return !pages->busy(); }, 30000)) {
    *error = "the page records did not load within 30 s";
    return {};
  }
  if (pages->model()->rowCount() > 0) {
    int row = 0;  // a GET page with a language, if there is one
    for (int r = 0; r < pages->model()->rowCount(); ++r) {
      const PageRecord* p = pages->model()->record(r);
      if (p->method == "GET" && !p->language.isEmpty()) {
        row = r;
        break;
      }
    }
    pages->table()->selectRow(row);
    WaitFor([&] { return !b->viewer()->busy(); }, 10000);
    WaitFor([] { return false; }, 30);
    if (!save("pages.png")) return {};
  }
  b->views()->setCurrentWidget(table);

  // The filter in use, for the purge workflow.
  b->setFilter("session", false);
  WaitFor([&] { return !b->loader()->running(); }, 30000);
  if (b->model()->rowCount() > 0) {
    table->selectRow(0);
    WaitFor([&] { return !b->viewer()->busy(); }, 10000);
    if (!save("filtered-keys.png")) return {};
  }
  return written;
}

}  // namespace rcgui
