// A region of 1,000,000 keys: the first rows show within a second, the whole
// listing loads, sorts and filters while the event loop keeps answering. A
// QTimer probe on the UI thread measures the longest gap between its ticks
// (the longest stall a user would feel) and how much of that gap the UI
// thread spent computing: on a loaded machine a gap can also be time the
// thread waited for a CPU, which no design of the app can remove.
#include <QElapsedTimer>
#include <QHeaderView>
#include <QJsonDocument>
#include <QTabWidget>
#include <QTableView>
#include <QTreeView>
#include <QTimer>
#include <QtTest>
#include <cstdio>
#include <ctime>
#include <functional>

#include "key_browser.h"
#include "key_groups.h"
#include "key_table_model.h"
#include "main_window.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/shm_store.h"
#include "test_support.h"

using namespace rcgui;
using namespace rcgui::testing;

namespace {

constexpr int kKeys = 1000000;
// The longest the UI thread may compute without returning to the event loop.
// A frame is 16 ms; the bound leaves room for a slow CI machine while still
// failing any design that lists, sorts or inserts a large part of the region
// on the UI thread (each of those takes most of a second at this size).
constexpr qint64 kMaxBusyMs = 250;
// The longest wall-clock gap allowed, waits for a CPU included: "never freezes".
constexpr qint64 kMaxGapMs = 2000;

int64_t ThreadCpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Ticks every 5 ms on the UI thread; remembers the longest gap between two
// ticks and the most UI-thread CPU time spent within one gap.
class StallProbe {
 public:
  StallProbe() {
    timer_.setInterval(5);
    QObject::connect(&timer_, &QTimer::timeout, [this] {
      const qint64 now = clock_.elapsed();
      const int64_t cpu = ThreadCpuMs();
      gap_ = std::max(gap_, now - last_);
      busy_ = std::max<qint64>(busy_, cpu - last_cpu_);
      last_ = now;
      last_cpu_ = cpu;
    });
  }
  void start() {
    clock_.start();
    last_ = 0;
    last_cpu_ = ThreadCpuMs();
    gap_ = busy_ = 0;
    timer_.start();
  }
  void stop() { timer_.stop(); }
  // Runs act, then the event loop until done (60 s at most), the probe on;
  // prints "<what>: N ms" and returns N, or -1 when done never came.
  qint64 run(const char* what, const std::function<void()>& act, const std::function<bool()>& done) {
    QElapsedTimer t;
    start();
    t.start();
    act();
    const bool ok = WaitUntil(done, 60000);
    const qint64 ms = t.elapsed();
    stop();
    std::printf("%s: %lld ms\n", what, static_cast<long long>(ms));
    return ok ? ms : -1;
  }
  qint64 gap() const { return gap_; }
  qint64 busy() const { return busy_; }
  // Prints the figures and checks them against the bounds.
  bool check(const char* what, QString* message) const {
    std::printf("%s: longest event-loop stall %lld ms (UI thread busy %lld ms of it)\n", what,
                static_cast<long long>(gap_), static_cast<long long>(busy_));
    *message = QString("%1: stall %2 ms, UI thread busy %3 ms").arg(what).arg(gap_).arg(busy_);
    return busy_ < kMaxBusyMs && gap_ < kMaxGapMs;
  }

 private:
  QTimer timer_;
  QElapsedTimer clock_;
  qint64 last_ = 0, gap_ = 0, busy_ = 0;
  int64_t last_cpu_ = 0;
};

}  // namespace

class BigRegionTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void cleanupTestCase();
  void millionKeysLoadWithoutFreezing();
  void groupsWithoutFreezing();
  void sortAndFilterWithoutFreezing();
  void listingAndPurgeCanBeCancelled();

 private:
  QString name_;
  std::unique_ptr<MainWindow> window_;
};

void BigRegionTest::initTestCase() {
  name_ = UniqueName("million");
  regioncache::StoreSpec spec{name_.toStdString(), "shm", name_.toStdString(), {{"SIZE", "320MB"}}};
  std::unique_ptr<regioncache::Store> store;
  regioncache::Status s = regioncache::OpenStore(spec, &store);
  QVERIFY2(s.ok(), s.ToString().c_str());
  QElapsedTimer t;
  t.start();
  // The keys Django would make (":1:<key>"), str values, half of them expiring
  // in an hour; even numbers plain keys, odd ones keys of a @region function.
  const int64_t hour = regioncache::NowMs() + 3600 * 1000;
  std::vector<std::string> keys, values;
  for (int base = 0; base < kKeys; base += 10000) {
    keys.clear();
    values.clear();
    for (int i = base; i < base + 10000; ++i) {
      char k[32];
      std::snprintf(k, sizeof k, i % 2 ? ":1:big.fn(i=%07d)" : ":1:big:%07d", i);
      keys.emplace_back(k);
      values.emplace_back(std::string(size_t(i % 50), 'v') + std::to_string(i));
    }
    std::vector<regioncache::WriteItem> items;
    for (size_t j = 0; j < keys.size(); ++j)
      items.push_back({keys[j], values[j], regioncache::kEncStr, (j % 2) ? hour : regioncache::kNever});
    std::vector<size_t> failed;
    s = store->SetMany(items, &failed);
    QVERIFY2(s.ok(), s.ToString().c_str());
    QVERIFY(failed.empty());
  }
  regioncache::Stats stats;
  QVERIFY(store->GetStats(&stats).ok());
  QCOMPARE(stats.entries, uint64_t(kKeys));
  std::printf("filled %d keys in %lld ms\n", kKeys, static_cast<long long>(t.elapsed()));
  // Django reads the same region.
  QString error;
  QByteArray out = DjangoRegion(QJsonObject{{"BACKEND", "regioncache.SharedMemoryCache"},
                                            {"LOCATION", name_},
                                            {"OPTIONS", QJsonObject{{"SIZE", "320MB"}}}},
                                {"get", "big:0000042"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  QCOMPARE(QJsonDocument::fromJson(out)["value"].toString(), QString("'") + QString(42, 'v') + "42'");
}

void BigRegionTest::cleanupTestCase() {
  window_.reset();
  regioncache::RemoveShmRegion(name_.toStdString());
}

void BigRegionTest::millionKeysLoadWithoutFreezing() {
  window_ = std::make_unique<MainWindow>();
  window_->resize(1200, 700);
  window_->show();
  QVERIFY(QTest::qWaitForWindowExposed(window_.get()));
  QTest::qWait(200);  // the first paint (fonts, styles) is start-up, not loading
  KeyBrowser* b = window_->browser();
  StallProbe probe;
  QElapsedTimer t;
  probe.start();
  t.start();
  RegionSpec spec;
  QString error;
  QVERIFY(ManualRegion("shm", name_, QString(), &spec, &error));
  window_->addRegion(spec);
  QVERIFY(WaitUntil([&] { return b->model()->rowCount() > 0; }, 10000));
  const qint64 first_rows = t.elapsed();
  // Scroll about while it loads, as a user would.
  int scrolls = 0;
  QVERIFY(WaitUntil([&] {
    if (++scrolls % 50 == 0) b->table()->scrollToBottom();
    return !b->loader()->running();
  }, 120000));
  const qint64 all_rows = t.elapsed();
  probe.stop();
  QCOMPARE(b->model()->rowCount(), kKeys);
  std::printf("1,000,000 keys: first rows after %lld ms, all rows after %lld ms\n",
              static_cast<long long>(first_rows), static_cast<long long>(all_rows));
  QString message;
  QVERIFY2(probe.check("loading 1,000,000 keys", &message), qPrintable(message));
  QVERIFY2(first_rows < 1000, qPrintable(QString("first rows after %1 ms").arg(first_rows)));
}

// The Groups tab on the million keys: grouped on a worker while the tree
// view shows, every count and byte right.
void BigRegionTest::groupsWithoutFreezing() {
  KeyBrowser* b = window_->browser();
  QCOMPARE(b->model()->rowCount(), kKeys);
  QVERIFY(WaitUntil([&] { return !b->groups()->busy(); }, 60000));  // the one the listing's end started
  b->views()->setCurrentWidget(b->groupsView());
  StallProbe probe;
  QVERIFY(probe.run("grouping 1,000,000 keys", [&] { b->groups()->recompute(); },
                    [&] { return !b->groups()->busy(); }) >= 0);
  QString message;
  QVERIFY2(probe.check("grouping 1,000,000 keys", &message), qPrintable(message));
  uint64_t even_bytes = 0, odd_bytes = 0;
  for (int i = 0; i < kKeys; ++i) (i % 2 ? odd_bytes : even_bytes) += uint64_t(i % 50) + std::to_string(i).size();
  const KeyGroup* root = b->groups()->root();
  QCOMPARE(root->entries, uint64_t(kKeys));
  QCOMPARE(root->bytes, even_bytes + odd_bytes);
  QCOMPARE(root->children.size(), size_t(1));
  const KeyGroup* head = root->children[0].get();
  QCOMPARE(head->label, QString("KEY_PREFIX \"\", version 1"));
  QCOMPARE(head->children.size(), size_t(2));
  const KeyGroup* plain = head->children[0].get();
  const KeyGroup* fn = head->children[1].get();
  QCOMPARE(plain->label, QString("plain"));
  QCOMPARE(plain->entries, uint64_t(kKeys / 2));
  QCOMPARE(plain->bytes, even_bytes);
  QCOMPARE(fn->label, QString("@region function"));
  QCOMPARE(fn->children.size(), size_t(1));
  QCOMPARE(fn->children[0]->label, QString("big.fn"));
  QCOMPARE(fn->children[0]->entries, uint64_t(kKeys / 2));
  QCOMPARE(fn->children[0]->bytes, odd_bytes);
  QVERIFY(b->groupsView()->isExpanded(b->groups()->index(0, 0)));
  b->views()->setCurrentWidget(b->table());

  // Sorting by kind classifies each key once, on the worker.
  QVERIFY(probe.run("sort of 1,000,000 keys by kind", [&] {
    b->table()->horizontalHeader()->setSortIndicator(KeyTableModel::kKind, Qt::DescendingOrder);
  }, [&] { return !b->model()->sorting(); }) >= 0);
  QVERIFY2(probe.check("sorting 1,000,000 keys by kind", &message), qPrintable(message));
  QCOMPARE(b->model()->entry(0).key, std::string(":1:big.fn(i=0999999)"));
  QCOMPARE(b->model()->entry(kKeys - 1).key, std::string(":1:big:0000000"));
}

void BigRegionTest::sortAndFilterWithoutFreezing() {
  KeyBrowser* b = window_->browser();
  QCOMPARE(b->model()->rowCount(), kKeys);
  StallProbe probe;
  QElapsedTimer t;
  QVERIFY(probe.run("sort of 1,000,000 keys by size", [&] {
    b->table()->horizontalHeader()->setSortIndicator(KeyTableModel::kSize, Qt::DescendingOrder);
  }, [&] { return !b->model()->sorting(); }) >= 0);
  QString message;
  QVERIFY2(probe.check("sorting 1,000,000 keys", &message), qPrintable(message));
  QCOMPARE(b->model()->entry(0).value_size, uint64_t(49 + 6));  // 'v' * 49 + a 6-digit number
  for (int r = 1; r < 1000; ++r) QVERIFY(b->model()->entry(r - 1).value_size >= b->model()->entry(r).value_size);

  probe.start();
  t.start();
  b->setFilter(":1:big:00012*", true);
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && !b->model()->sorting(); }, 60000));
  const qint64 filter_ms = t.elapsed();
  probe.stop();
  std::printf("glob filter over 1,000,000 keys: %lld ms\n", static_cast<long long>(filter_ms));
  QCOMPARE(b->model()->rowCount(), 50);  // the even numbers: the odd ones are function keys
  QVERIFY2(probe.check("filtering 1,000,000 keys", &message), qPrintable(message));
  b->setFilter("0099999", false);
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && !b->model()->sorting(); }, 60000));
  QCOMPARE(b->model()->rowCount(), 1);
  QCOMPARE(b->model()->entry(0).key, std::string(":1:big.fn(i=0099999)"));
}

void BigRegionTest::listingAndPurgeCanBeCancelled() {
  KeyBrowser* b = window_->browser();
  b->table()->horizontalHeader()->setSortIndicator(-1, Qt::AscendingOrder);
  QSignalSpy finished(b->loader(), &KeyLoader::finished);
  b->setFilter("", false);
  QVERIFY(WaitUntil([&] { return b->model()->rowCount() > 0; }, 10000));
  b->loader()->cancel();
  QVERIFY(WaitUntil([&] { return !b->loader()->running(); }, 10000));
  QVERIFY(!finished.isEmpty());
  QCOMPARE(finished.last()[1].toBool(), true);  // cancelled
  QVERIFY(b->model()->rowCount() < kKeys);

  // Purge by filter: cancelled during its count preview, nothing is deleted.
  bool asked = false;
  b->setConfirmer([&](const QString&, const QString&) { return asked = true; });
  b->setFilter(":1:big:*", true);
  b->loader()->cancel();
  QVERIFY(WaitUntil([&] { return !b->loader()->running(); }, 10000));
  QSignalSpy done(b, &KeyBrowser::operationDone);
  b->purgeByFilter();
  QVERIFY(b->busy());
  b->cancelOperation();
  QVERIFY(done.wait(30000));
  QCOMPARE(done[0][0].toBool(), false);
  QVERIFY(!asked);
  regioncache::Status s;
  auto store = b->region()->acquire(&s);
  regioncache::Stats stats;
  QVERIFY(store && store->GetStats(&stats).ok());
  QCOMPARE(stats.entries, uint64_t(kKeys));
}

QTEST_MAIN(BigRegionTest)
#include "big_region_test.moc"
