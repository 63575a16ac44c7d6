// Loads a region's keys page by page on a worker thread and hands each page
// to the UI thread as an immutable batch. The first page is small so that
// rows show at once; later pages are larger. The worker lists the next page
// while the UI inserts the current one, then waits until the UI has taken
// it: one batch in the queue at most, so a fast store can neither flood the
// event loop nor make it insert several batches in one go.
#pragma once

#include <QFuture>
#include <QObject>
#include <QString>
#include <atomic>
#include <memory>
#include <vector>

#include "region.h"

namespace rcgui {

using EntryBatch = std::shared_ptr<const std::vector<regioncache::EntryInfo>>;

class KeyLoader : public QObject {
  Q_OBJECT

 public:
  explicit KeyLoader(QObject* parent = nullptr);
  ~KeyLoader() override;  // cancels and waits for the worker

  // Starts listing region's live keys matching glob ("" for all), cancelling
  // any listing under way (its batches still queued are dropped).
  void start(RegionPtr region, const QString& glob);
  void cancel();
  bool running() const { return running_; }

  // Pages grow from kPage to kMaxPage: inserting rows costs the view a little
  // per row and a little per insertion (more as the table grows), so big
  // regions come in fewer, larger batches.
  static constexpr size_t kFirstPage = 200;
  static constexpr size_t kPage = 5000;
  static constexpr size_t kMaxPage = 20000;

 signals:
  void started(quint64 estimate);  // entries in the region (a bound for the progress bar)
  void batchReady(rcgui::EntryBatch batch);
  void progress(quint64 rows, quint64 scanned, quint64 estimate);
  void finished(bool ok, bool cancelled, const QString& error, quint64 rows);

 private:
  struct Job {
    uint64_t generation = 0;
    std::atomic<bool> cancel{false};
    std::atomic<int> pending{0};  // batches posted, not yet delivered
  };
  void run(std::shared_ptr<Job> job, RegionPtr region, std::string glob);

  uint64_t generation_ = 0;  // UI thread only: batches of older jobs are dropped
  std::shared_ptr<Job> job_;
  // Workers that may still post to this object: a cancelled one finishes its
  // page in the background instead of blocking the UI; the destructor waits
  // for all of them.
  std::vector<QFuture<void>> futures_;
  bool running_ = false;
  quint64 rows_ = 0;
};

}  // namespace rcgui
