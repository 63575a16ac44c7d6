#include "key_loader.h"

#include <QMetaObject>
#include <QtConcurrent/QtConcurrentRun>
#include <chrono>
#include <thread>

namespace rcgui {

KeyLoader::KeyLoader(QObject* parent) : QObject(parent) {}

KeyLoader::~KeyLoader() {
  cancel();
  // The worker posts to this object; once it has stopped nothing more is
  // posted, and Qt drops what is still queued for a deleted receiver.
  for (auto& f : futures_) f.waitForFinished();
}

void KeyLoader::cancel() {
  if (job_) job_->cancel = true;
}

void KeyLoader::start(RegionPtr region, const QString& glob) {
  cancel();  // its batches still queued are dropped by the generation check
  std::erase_if(futures_, [](const QFuture<void>& f) { return f.isFinished(); });
  job_ = std::make_shared<Job>();
  job_->generation = ++generation_;
  running_ = true;
  rows_ = 0;
  futures_.push_back(QtConcurrent::run([this, job = job_, region, g = glob.toStdString()] {
    run(job, region, g);
  }));
}

void KeyLoader::run(std::shared_ptr<Job> job, RegionPtr region, std::string glob) {
  auto post = [this, job](auto fn) {
    QMetaObject::invokeMethod(
        this,
        [this, job, fn] {
          if (job->generation != generation_) return;  // a newer listing replaced it
          fn();
        },
        Qt::QueuedConnection);
  };
  auto finish = [&](bool ok, bool cancelled, QString error) {
    post([this, ok, cancelled, error] {
      running_ = false;
      emit finished(ok, cancelled, error, rows_);
    });
  };

  regioncache::Status s;
  auto store = region->acquire(&s);
  if (!store) return finish(false, false, StatusText(*region, s));
  regioncache::Stats stats;
  s = store->GetStats(&stats);
  if (!s.ok()) return finish(false, false, StatusText(*region, s));
  const quint64 estimate = stats.entries;
  post([this, estimate] { emit started(estimate); });

  regioncache::ListOptions opts;
  opts.glob = glob;
  opts.limit = kFirstPage;
  uint64_t scanned = 0;
  for (;;) {
    if (job->cancel) return finish(true, true, QString());
    auto page = std::make_shared<regioncache::ListPage>();
    s = store->List(opts, page.get());
    if (!s.ok()) return finish(false, false, StatusText(*region, s));
    scanned += page->scanned;
    if (!page->entries.empty()) {
      auto batch = std::make_shared<std::vector<regioncache::EntryInfo>>(std::move(page->entries));
      job->pending++;
      post([this, job, batch, scanned, estimate] {
        job->pending--;
        rows_ += batch->size();
        emit batchReady(batch);
        emit progress(rows_, scanned, estimate);
      });
    }
    if (page->next_cursor.empty()) break;
    opts.cursor = std::move(page->next_cursor);
    opts.limit = opts.limit < kPage ? kPage : std::min(opts.limit * 2, kMaxPage);
    // Back-pressure: the UI takes one batch per turn of its event loop.
    while (job->pending > 0 && !job->cancel) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  finish(true, false, QString());
}

}  // namespace rcgui
