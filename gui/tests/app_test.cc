// The app as a user drives it: the main window on real regions filled by
// Django; deletes and purges made in the app are then checked through Django;
// read-only mode refuses every write; failures show what and where while the
// other regions keep working.
#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QDir>
#include <QJsonArray>
#include <QJsonDocument>
#include <QLabel>
#include <QLineEdit>
#include <QSettings>
#include <QStandardPaths>
#include <QTabWidget>
#include <QTableView>
#include <QTemporaryDir>
#include <QTreeView>
#include <QtTest>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "key_browser.h"
#include "key_groups.h"
#include "key_table_model.h"
#include "main_window.h"
#include "regioncache/shm_store.h"
#include "test_support.h"

using namespace rcgui;
using namespace rcgui::testing;

class AppTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void init();
  void cleanup();
  void keysAreListedAsDjangoStoredThem_data() { kinds(); }
  void keysAreListedAsDjangoStoredThem();
  void deleteIsSeenByDjango_data() { kinds(); }
  void deleteIsSeenByDjango();
  void purgeByFilterIsSeenByDjango_data() { kinds(); }
  void purgeByFilterIsSeenByDjango();
  void purgeExpiredRemovesOnlyExpired_data() { kinds(); }
  void purgeExpiredRemovesOnlyExpired();
  void clearNamesTheRegionAndEmptiesIt_data() { kinds(); }
  void clearNamesTheRegionAndEmptiesIt();
  void readOnlyRefusesEveryWrite_data() { kinds(); }
  void readOnlyRefusesEveryWrite();
  void readOnlyNeverRepairsADamagedSegment();
  void failuresNameWhatAndWhere();
  void shortcutsCopyAndSettings();
  void djangoNamesWinOverDiscovery();
  void kindColumnAndGroupsOnDjangoKeys();
  void opensOnACachedPage();

 private:
  void kinds();
  // The helpers below that return bool have failed the test, with the
  // reason, when they return false: the caller then returns at once, never
  // going on with a region or window that is not there.
  // One key of each Django kind in the region of conf (support/django_kinds.py).
  bool fillKinds(const QJsonObject& conf);
  // A Django settings module in dir: CACHES from caches (alias -> entry).
  bool writeSettings(const QString& dir, const QString& module, const QJsonObject& caches);
  // A fresh region of kind filled by Django (removed after the test).
  bool fill(const KindUnderTest& kind, const QString& tag, QJsonObject* conf, QJsonArray* stored = nullptr);
  // Opens a window on a fresh region of the current row's kind, keys loaded.
  bool openFilled();
  QJsonObject djangoHas(const QStringList& names);
  int selectKeys(const QStringList& keys);
  bool waitOperation();

  KindUnderTest kind_;
  QJsonObject conf_;
  QJsonArray stored_;
  std::unique_ptr<MainWindow> window_;
  QStringList confirmations_;
  bool answer_ = true;
  std::vector<std::function<void()>> cleanups_;
};

void AppTest::kinds() {
  QTest::addColumn<int>("kind");
  const auto all = AllKinds();
  for (int i = 0; i < all.size(); ++i) QTest::newRow(qPrintable(all[i].kind)) << i;
}

void AppTest::initTestCase() {
  QStandardPaths::setTestModeEnabled(true);  // QSettings in a test location
  // ... of this run alone: two runs at once (two checkouts, ctest -j) would
  // otherwise share one settings file and see each other's recent sources.
  static QTemporaryDir settings_dir;
  QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, settings_dir.path());
  QApplication::setOrganizationName("regioncache-tests");
  QApplication::setApplicationName("regioncache-gui-test");
  QSettings().clear();
}

void AppTest::init() {
  confirmations_.clear();
  answer_ = true;
}

void AppTest::cleanup() {
  window_.reset();
  for (auto& c : cleanups_) c();
  cleanups_.clear();
}

bool AppTest::fillKinds(const QJsonObject& conf) {
  QByteArray out;
  QString error;
  if (RunPython({QString(REGIONCACHE_SOURCE_DIR) + "/gui/tests/support/django_kinds.py",
                 QString::fromUtf8(QJsonDocument(conf).toJson(QJsonDocument::Compact))},
                &out, &error))
    return true;
  QTest::qFail(qPrintable("the region could not be filled: " + error), __FILE__, __LINE__);
  return false;
}

bool AppTest::writeSettings(const QString& dir, const QString& module, const QJsonObject& caches) {
  QFile f(QDir(dir).filePath(module + ".py"));
  if (!f.open(QIODevice::WriteOnly)) {
    QTest::qFail(qPrintable("cannot write " + f.fileName()), __FILE__, __LINE__);
    return false;
  }
  // JSON's true/false/null never occur in these entries; the rest reads as Python.
  f.write("SECRET_KEY = 'x'\nINSTALLED_APPS = ['regioncache']\nCACHES = " +
          QJsonDocument(caches).toJson(QJsonDocument::Compact) + "\n");
  qputenv("PYTHONPATH", TestPythonPath().toLocal8Bit());
  return true;
}

bool AppTest::fill(const KindUnderTest& kind, const QString& tag, QJsonObject* conf, QJsonArray* stored) {
  *conf = kind.django_conf(UniqueName(tag));
  cleanups_.push_back([kind, c = *conf] { kind.cleanup(c); });
  QString error;
  const QByteArray out = DjangoRegion(*conf, {"fill"}, &error);
  if (!error.isEmpty()) {
    QTest::qFail(qPrintable("the region could not be filled: " + error), __FILE__, __LINE__);
    return false;
  }
  if (stored) *stored = QJsonDocument::fromJson(out).array();
  return true;
}

bool AppTest::openFilled() {
  QFETCH(int, kind);
  kind_ = AllKinds()[kind];
  if (!fill(kind_, "app-" + kind_.kind, &conf_, &stored_)) return false;
  window_ = std::make_unique<MainWindow>();
  window_->resize(1200, 700);
  window_->show();
  window_->browser()->setConfirmer([this](const QString&, const QString& text) {
    confirmations_ << text;
    return answer_;
  });
  window_->addRegion(SpecFromConf("site", kind_.kind, conf_));
  KeyBrowser* b = window_->browser();
  if (WaitUntil([&] { return b->region() && !b->loader()->running() && b->model()->rowCount() == 10; }))
    return true;
  QTest::qFail(qPrintable(QString("the window did not list the 10 keys of %1 (%2 rows; %3)")
                              .arg(conf_["LOCATION"].toString())
                              .arg(b->model()->rowCount())
                              .arg(b->lastError())),
               __FILE__, __LINE__);
  return false;
}

QJsonObject AppTest::djangoHas(const QStringList& names) {
  QString error;
  QByteArray out = DjangoRegion(conf_, QStringList{"has"} + names, &error);
  if (!error.isEmpty()) qWarning("%s", qPrintable(error));
  return QJsonDocument::fromJson(out).object();
}

int AppTest::selectKeys(const QStringList& keys) {
  KeyBrowser* b = window_->browser();
  b->table()->clearSelection();
  int n = 0;
  for (int r = 0; r < b->model()->rowCount(); ++r) {
    if (!keys.contains(QString::fromStdString(b->model()->entry(r).key))) continue;
    b->table()->selectionModel()->select(b->model()->index(r, 0),
                                         QItemSelectionModel::Select | QItemSelectionModel::Rows);
    ++n;
  }
  return n;
}

bool AppTest::waitOperation() {
  KeyBrowser* b = window_->browser();
  return WaitUntil([&] { return !b->busy() && !b->loader()->running(); });
}

void AppTest::keysAreListedAsDjangoStoredThem() {
  if (!openFilled()) return;
  KeyTableModel* m = window_->browser()->model();
  QCOMPARE(m->rowCount(), stored_.size());
  for (const auto& v : stored_) {
    const QJsonObject s = v.toObject();
    bool found = false;
    for (int r = 0; r < m->rowCount(); ++r) {
      const auto& e = m->entry(r);
      if (QString::fromStdString(e.key) != s["key"].toString()) continue;
      found = true;
      QCOMPARE(qint64(e.value_size), s["size"].toInteger());
      if (s["expires"].isNull()) QCOMPARE(e.expires_ms, int64_t(0));
      else QVERIFY(std::abs(double(e.expires_ms) - s["expires"].toDouble() * 1000) < 2000);
    }
    QVERIFY2(found, qPrintable(s["key"].toString()));
  }
  // The region list shows the same region with its figures.
  RegionListModel* regions = window_->regions();
  QVERIFY(WaitUntil([&] { return regions->rowCount() == 1 && regions->row(0).have_stats; }));
  QCOMPARE(regions->row(0).stats.entries, uint64_t(10));
}

void AppTest::deleteIsSeenByDjango() {
  if (!openFilled()) return;
  KeyBrowser* b = window_->browser();
  QCOMPARE(selectKeys({":1:user:1", ":1:counter"}), 2);
  QVERIFY(b->deleteAction()->isEnabled());
  QSignalSpy done(b, &KeyBrowser::operationDone);
  // The Del key, as a user presses it in the table.
  QApplication::setActiveWindow(window_.get());
  QVERIFY(QTest::qWaitForWindowActive(window_.get()));
  b->table()->setFocus();
  QTest::keyClick(b->table(), Qt::Key_Delete);
  QVERIFY(done.wait(10000));
  QVERIFY2(done[0][0].toBool(), qPrintable(done[0][1].toString()));
  QCOMPARE(b->model()->rowCount(), 8);
  const QJsonObject has = djangoHas({"user:1", "counter", "user:2", "image"});
  QCOMPARE(has["user:1"].toBool(), false);
  QCOMPARE(has["counter"].toBool(), false);
  QCOMPARE(has["user:2"].toBool(), true);
  QCOMPARE(has["image"].toBool(), true);
}

void AppTest::purgeByFilterIsSeenByDjango() {
  if (!openFilled()) return;
  KeyBrowser* b = window_->browser();
  b->setFilter("session:", false);
  QVERIFY(waitOperation());
  QCOMPARE(b->model()->rowCount(), 2);
  QVERIFY(b->purgeFilterAction()->isEnabled());
  // Refused at the question: nothing goes.
  answer_ = false;
  QSignalSpy done(b, &KeyBrowser::operationDone);
  b->purgeFilterAction()->trigger();
  QVERIFY(done.wait(10000));
  QCOMPARE(done[0][0].toBool(), false);
  QCOMPARE(djangoHas({"session:abc"})["session:abc"].toBool(), true);
  // Accepted: the preview count and the region are named, then the keys go.
  answer_ = true;
  b->purgeFilterAction()->trigger();
  QVERIFY(done.wait(10000));
  QVERIFY2(done[1][0].toBool(), qPrintable(done[1][1].toString()));
  QCOMPARE(confirmations_.size(), 2);
  const QString q = confirmations_.last();
  QVERIFY2(q.contains("2 keys") && q.contains("*session:*") && q.contains("'site'") &&
               q.contains(conf_["LOCATION"].toString()),
           qPrintable(q));
  QVERIFY(waitOperation());
  QCOMPARE(b->model()->rowCount(), 0);
  const QJsonObject has = djangoHas({"session:abc", "session:def", "user:1", "json"});
  QCOMPARE(has["session:abc"].toBool(), false);
  QCOMPARE(has["session:def"].toBool(), false);
  QCOMPARE(has["user:1"].toBool(), true);
  QCOMPARE(has["json"].toBool(), true);
  QVERIFY2(b->lastMessage().contains("purged 2 keys"), qPrintable(b->lastMessage()));
  // A glob filter.
  b->setFilter(":1:user:[12]", true);
  QVERIFY(waitOperation());
  QCOMPARE(b->model()->rowCount(), 2);
  b->purgeByFilter();
  QVERIFY(done.wait(10000));
  QVERIFY(done.last()[0].toBool());
  QCOMPARE(djangoHas({"user:2"})["user:2"].toBool(), false);
}

void AppTest::purgeExpiredRemovesOnlyExpired() {
  if (!openFilled()) return;
  QString error;
  DjangoRegion(conf_, {"set-many", "5", "short-", "0.5"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  QTest::qWait(900);
  KeyBrowser* b = window_->browser();
  QSignalSpy done(b, &KeyBrowser::operationDone);
  b->purgeExpiredAction()->trigger();
  QVERIFY(done.wait(10000));
  QVERIFY2(done[0][0].toBool(), qPrintable(done[0][1].toString()));
  QVERIFY2(b->lastMessage().contains("purged 5 expired"), qPrintable(b->lastMessage()));
  // Gone even from a listing that includes expired entries; the rest stays.
  regioncache::Status s;
  auto store = b->region()->acquire(&s);
  QVERIFY(store);
  regioncache::ListOptions opts;
  opts.include_expired = true;
  regioncache::ListPage page;
  QVERIFY(store->List(opts, &page).ok());
  QCOMPARE(page.entries.size(), size_t(10));
  QVERIFY(waitOperation());
  QCOMPARE(b->model()->rowCount(), 10);
}

void AppTest::clearNamesTheRegionAndEmptiesIt() {
  if (!openFilled()) return;
  KeyBrowser* b = window_->browser();
  answer_ = false;
  b->clearAction()->trigger();
  QCOMPARE(confirmations_.size(), 1);
  QVERIFY2(confirmations_[0].contains("'site'") && confirmations_[0].contains(conf_["LOCATION"].toString()),
           qPrintable(confirmations_[0]));
  QCOMPARE(djangoHas({"json"})["json"].toBool(), true);
  answer_ = true;
  QSignalSpy done(b, &KeyBrowser::operationDone);
  b->clearAction()->trigger();
  QVERIFY(done.wait(10000));
  QVERIFY(done[0][0].toBool());
  QString error;
  QByteArray out = DjangoRegion(conf_, {"count"}, &error);
  QCOMPARE(QJsonDocument::fromJson(out)["count"].toInt(), 0);
  QVERIFY(waitOperation());
  QCOMPARE(b->model()->rowCount(), 0);
}

void AppTest::readOnlyRefusesEveryWrite() {
  if (!openFilled()) return;
  KeyBrowser* b = window_->browser();
  window_->readOnlyAction()->trigger();
  QVERIFY(window_->readOnly());
  b->setFilter("user", false);
  QVERIFY(waitOperation());
  QCOMPARE(selectKeys({":1:user:1"}), 1);
  for (QAction* a : {b->deleteAction(), b->purgeFilterAction(), b->purgeExpiredAction(), b->clearAction()})
    QVERIFY2(!a->isEnabled(), qPrintable(a->text()));
  QVERIFY(b->copyKeyAction()->isEnabled());  // reading is fine
  // Even called directly (a shortcut, a stale button), every write is refused.
  b->deleteSelected();
  QVERIFY2(b->lastError().contains("read-only") && b->lastError().contains("site"), qPrintable(b->lastError()));
  b->purgeByFilter();
  QVERIFY2(b->lastError().contains("purge refused"), qPrintable(b->lastError()));
  b->purgeExpired();
  QVERIFY2(b->lastError().contains("expired entries refused"), qPrintable(b->lastError()));
  b->clearRegion();
  QVERIFY2(b->lastError().contains("clear refused"), qPrintable(b->lastError()));
  QVERIFY(confirmations_.isEmpty());
  QVERIFY(!b->busy());
  QString error;
  QByteArray out = DjangoRegion(conf_, {"count"}, &error);
  QCOMPARE(QJsonDocument::fromJson(out)["count"].toInt(), 10);
  // The gate itself, below the UI.
  WriteGate gate(true);
  uint64_t n = 0;
  QVERIFY(!gate.deleteKeys(*b->region(), {":1:json"}, &n).ok());
  QVERIFY(!gate.purgeMatching(*b->region(), "*", &n, {}).ok());
  QVERIFY(!gate.clear(*b->region()).ok());
  QCOMPARE(djangoHas({"json"})["json"].toBool(), true);
  // And back to writable.
  window_->readOnlyAction()->trigger();
  QVERIFY(!window_->readOnly());
  QVERIFY(b->deleteAction()->isEnabled());
  // A window started read-only (--read-only) is so from the start.
  MainWindow ro(true);
  QVERIFY(ro.readOnly());
  QVERIFY(ro.readOnlyAction()->isChecked());
}

void AppTest::readOnlyNeverRepairsADamagedSegment() {
  // A region Django filled, then one block header damaged from outside.
  QJsonObject conf;
  if (!fill(AllKinds().first(), "ro-damaged", &conf)) return;
  const std::string seg = regioncache::ShmSegmentName(conf["LOCATION"].toString().toStdString());
  int fd = shm_open(seg.c_str(), O_RDWR, 0);
  QVERIFY(fd >= 0);
  const off_t size = lseek(fd, 0, SEEK_END);
  char* raw = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  close(fd);
  QVERIFY(raw != MAP_FAILED);
  const uint64_t arena_off = *reinterpret_cast<uint64_t*>(raw + 64);
  const uint64_t arena_size = *reinterpret_cast<uint64_t*>(raw + 72);
  int live = 0;
  for (uint64_t pos = 0; pos < arena_size;) {
    uint32_t* head = reinterpret_cast<uint32_t*>(raw + arena_off + pos);
    if (head[0] == 0x4556494c && ++live == 3) {  // "LIVE": the third entry's order becomes 3
      head[1] = 3;
      break;
    }
    pos += uint64_t(1) << head[1];
  }
  QCOMPARE(live, 3);
  const QByteArray before(raw, size);

  // --read-only: the app shows the damage and leaves every byte as it was.
  window_ = std::make_unique<MainWindow>(true);
  window_->show();
  window_->addRegion(SpecFromConf("damaged", "shm", conf));
  KeyBrowser* b = window_->browser();
  window_->selectRegion(0);
  QVERIFY(WaitUntil([&] { return b->region() && !b->loader()->running() && !b->lastError().isEmpty(); }));
  QVERIFY2(b->lastError().contains("damaged") && b->lastError().contains("read-only") &&
               b->lastError().contains(QString::fromStdString(seg)),
           qPrintable(b->lastError()));
  RegionListModel* regions = window_->regions();
  QVERIFY(WaitUntil([&] { return regions->row(0).have_stats || !regions->row(0).error.isEmpty(); }));
  QVERIFY(QByteArray(raw, size) == before);

  // Writable again: the app's next listing repairs the region.
  window_->readOnlyAction()->trigger();
  window_->selectRegion(0);
  b->reload();
  QVERIFY(WaitUntil([&] { return !b->loader()->running(); }));
  QVERIFY(QByteArray(raw, size) != before);
  munmap(raw, size);
}

void AppTest::failuresNameWhatAndWhere() {
  // A healthy region, a region that does not exist, and a segment of another layout.
  const KindUnderTest shm = AllKinds().first();
  QJsonObject good;
  if (!fill(shm, "good", &good)) return;
  const QString junk = UniqueName("junk");
  const std::string seg = regioncache::ShmSegmentName(junk.toStdString());
  int fd = shm_open(seg.c_str(), O_CREAT | O_RDWR, 0600);
  QVERIFY(fd >= 0);
  cleanups_.push_back([junk] { regioncache::RemoveShmRegion(junk.toStdString()); });
  std::string garbage(1 << 20, 'x');
  QCOMPARE(write(fd, garbage.data(), garbage.size()), ssize_t(garbage.size()));
  close(fd);
  const QString absent = UniqueName("absent");

  window_ = std::make_unique<MainWindow>();
  window_->show();
  window_->addRegion(SpecFromConf("junk", "shm", QJsonObject{{"LOCATION", junk}}));
  window_->addRegion(SpecFromConf("absent", "shm", QJsonObject{{"LOCATION", absent}}));
  window_->addRegion(SpecFromConf("good", "shm", good));
  RegionListModel* regions = window_->regions();
  QVERIFY(WaitUntil([&] { return regions->rowCount() == 3 && regions->row(2).have_stats; }));
  QVERIFY(WaitUntil([&] { return !regions->row(0).error.isEmpty() && !regions->row(1).error.isEmpty(); }));
  const QString junk_err = regions->row(0).error, absent_err = regions->row(1).error;
  QVERIFY2(junk_err.contains("junk") && junk_err.contains(QString::fromStdString(seg)) &&
               junk_err.contains("not a regioncache segment"),
           qPrintable(junk_err));
  QVERIFY2(absent_err.contains("absent") && absent_err.contains(absent), qPrintable(absent_err));
  QCOMPARE(regions->row(2).stats.entries, uint64_t(10));
  // The key browser on the broken region shows the error; the good one works after it.
  KeyBrowser* b = window_->browser();
  window_->selectRegion(0);
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && !b->lastError().isEmpty(); }));
  QVERIFY2(b->lastError().contains("not a regioncache segment"), qPrintable(b->lastError()));
  const QLabel* error_label = b->findChild<QLabel*>("error");
  QVERIFY(error_label);
  QVERIFY(error_label->isVisible());
  window_->selectRegion(2);
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && b->model()->rowCount() == 10; }));
  QVERIFY(!error_label->isVisible());
  // The absent region appears (a Django process creates it): the next refresh opens it.
  QJsonObject late = shm.django_conf(absent);
  cleanups_.push_back([shm, late] { shm.cleanup(late); });
  QString error;
  DjangoRegion(late, {"set-many", "4", "k", "60"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  regions->refresh();
  QVERIFY(WaitUntil([&] { return regions->row(1).error.isEmpty() && regions->row(1).have_stats; }));
  QCOMPARE(regions->row(1).stats.entries, uint64_t(4));
  QVERIFY(!regions->row(0).error.isEmpty());  // the junk segment is still reported
  // Sources that fail: a missing JSON file, a Django project that does not import.
  QSignalSpy source(window_.get(), &MainWindow::sourceDone);
  window_->openJsonFile("/nonexistent/regions.json");
  QCOMPARE(source.size(), 1);
  QVERIFY2(window_->sourceError().contains("/nonexistent/regions.json"), qPrintable(window_->sourceError()));
  window_->openDjangoProject({PythonExe(), "no_such_project.settings", {}});
  QVERIFY(source.wait(60000));
  QVERIFY(!source.last()[0].toBool());
  QVERIFY2(window_->sourceError().contains("no_such_project.settings"), qPrintable(window_->sourceError()));
  QCOMPARE(regions->rowCount(), 3);
}

void AppTest::shortcutsCopyAndSettings() {
  window_ = std::make_unique<MainWindow>();
  const QList<QKeySequence> refresh = window_->refreshAction()->shortcuts();
  QVERIFY(refresh.contains(QKeySequence(Qt::Key_F5)));
  QVERIFY(refresh.contains(QKeySequence(Qt::CTRL | Qt::Key_R)));
  QCOMPARE(window_->browser()->findAction()->shortcut(), QKeySequence(QKeySequence::Find));
  QCOMPARE(window_->browser()->deleteAction()->shortcut(), QKeySequence(QKeySequence::Delete));
  window_.reset();

  if (!fill(AllKinds().first(), "keys", &conf_)) return;
  window_ = std::make_unique<MainWindow>();
  window_->show();
  QApplication::setActiveWindow(window_.get());
  QVERIFY(QTest::qWaitForWindowActive(window_.get()));
  window_->addRegion(SpecFromConf("site", "shm", conf_));
  KeyBrowser* b = window_->browser();
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && b->model()->rowCount() == 10; }));
  // Ctrl+F puts the cursor in the filter.
  QTest::keyClick(window_.get(), Qt::Key_F, Qt::ControlModifier);
  const QLineEdit* filter = b->findChild<QLineEdit*>("filter");
  QVERIFY(filter);
  QVERIFY(filter->hasFocus());
  // F5 lists again (the region changed under us meanwhile).
  QString error;
  DjangoRegion(conf_, {"set-many", "3", "later-", "60"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  QTest::keyClick(window_.get(), Qt::Key_F5);
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && b->model()->rowCount() == 13; }));
  // Copy key.
  QCOMPARE(selectKeys({":1:json"}), 1);
  b->copyKeyAction()->trigger();
  QCOMPARE(QApplication::clipboard()->text(), QString(":1:json"));
  // Settings: the source is remembered, window state saved on close.
  QVERIFY(!window_->recentSources().isEmpty());
  QVERIFY2(window_->recentSources().first().contains(conf_["LOCATION"].toString()),
           qPrintable(window_->recentSources().first()));
  window_->setAutoRefresh(true, 7);
  window_->close();
  QSettings settings;
  QVERIFY(!settings.value("window/geometry").toByteArray().isEmpty());
  QCOMPARE(settings.value("refresh/interval").toInt(), 7);
  QCOMPARE(settings.value("refresh/auto").toBool(), true);
  // A new window starts as the last one was left.
  MainWindow again;
  QVERIFY(again.findChild<QAction*>() != nullptr);
  QCOMPARE(QSettings().value("refresh/interval").toInt(), 7);
}

// A segment found in /dev/shm, then listed by a Django project's CACHES:
// one row, named by the alias, with the project's options and KEY_PREFIX;
// the key browser, which showed the discovered row, now has the project's.
void AppTest::djangoNamesWinOverDiscovery() {
  const QString location = UniqueName("names");
  QJsonObject conf{{"BACKEND", "regioncache.SharedMemoryCache"}, {"LOCATION", location},
                   {"KEY_PREFIX", "site"}, {"OPTIONS", QJsonObject{{"SIZE", "8MB"}}}};
  cleanups_.push_back([location] { regioncache::RemoveShmRegion(location.toStdString()); });
  QString error;
  DjangoRegion(conf, {"set-text", "hello", "10"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  QVERIFY(writeSettings(dir.path(), "names_settings", {{"functions", conf}}));

  window_ = std::make_unique<MainWindow>();
  RegionListModel* regions = window_->regions();
  window_->discoverShm();
  const QString identity = "shm:" + location;
  const int row = regions->rowOf(identity);
  QVERIFY(row >= 0);
  QCOMPARE(regions->region(row)->spec().name, location);  // discovery knows only the segment
  window_->selectRegion(row);
  QCOMPARE(window_->browser()->region(), regions->region(row));
  // Other processes may make segments meanwhile: count this region's rows only.
  auto rows_of = [&] {
    int n = 0;
    for (int r = 0; r < regions->rowCount(); ++r) n += regions->region(r)->spec().Identity() == identity;
    return n;
  };
  QCOMPARE(rows_of(), 1);

  QSignalSpy source(window_.get(), &MainWindow::sourceDone);
  window_->openDjangoProject({PythonExe(), "names_settings", {dir.path()}});
  QVERIFY(source.wait(60000));
  QVERIFY2(source.last()[0].toBool(), qPrintable(source.last()[1].toString()));
  QCOMPARE(rows_of(), 1);  // the same region: no second row
  QCOMPARE(regions->rowOf(identity), row);
  const RegionSpec& spec = regions->region(row)->spec();
  QCOMPARE(spec.name, QString("functions"));
  QCOMPARE(spec.keyPrefix, QString("site"));
  QCOMPARE(spec.backend, QString("regioncache.SharedMemoryCache"));
  QCOMPARE(spec.options.value("SIZE"), QString("8MB"));
  QCOMPARE(regions->data(regions->index(row, RegionListModel::kName)).toString(), QString("functions"));
  QCOMPARE(window_->browser()->region(), regions->region(row));
  QVERIFY(WaitUntil([&] { return !window_->browser()->loader()->running(); }));
  QCOMPARE(window_->browser()->model()->rowCount(), 1);
  QCOMPARE(window_->browser()->model()->entry(0).key, std::string("site:1:hello"));
  // Discovery again does not take the name back.
  window_->discoverShm();
  QCOMPARE(regions->region(regions->rowOf(identity))->spec().name, QString("functions"));
  QCOMPARE(rows_of(), 1);
}

// The browser on a region Django filled with every kind of key: the kind
// column, the Groups tab, and a double-clicked group listing its keys.
void AppTest::kindColumnAndGroupsOnDjangoKeys() {
  const KindUnderTest kind = AllKinds()[0];
  const QJsonObject conf = kind.django_conf(UniqueName("app-kinds"));
  cleanups_.push_back([kind, conf] { kind.cleanup(conf); });
  QVERIFY(fillKinds(conf));
  window_ = std::make_unique<MainWindow>();
  window_->resize(1100, 700);
  window_->show();
  QVERIFY(QTest::qWaitForWindowExposed(window_.get()));
  window_->addRegion(SpecFromConf("kinds", kind.kind, conf));
  KeyBrowser* b = window_->browser();
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && !b->groups()->busy() && b->model()->rowCount() == 16; }));  // gui/tests/models_test.cc kFilledKeys
  QCOMPARE(b->model()->headerData(KeyTableModel::kKind, Qt::Horizontal).toString(), QString("Kind"));
  int pages = 0;
  for (int r = 0; r < b->model()->rowCount(); ++r)
    pages += b->model()->data(b->model()->index(r, KeyTableModel::kKind)).toString().startsWith("cached page");
  QCOMPARE(pages, 3);
  // The Groups tab: the tree is there, expanded to the kinds.
  b->views()->setCurrentWidget(b->groupsView());
  KeyGroupModel* g = b->groups();
  QCOMPARE(g->rowCount(), 1);
  const QModelIndex head = g->index(0, 0);
  QVERIFY(b->groupsView()->isExpanded(head));
  QModelIndex fragments;
  for (int r = 0; r < g->rowCount(head); ++r)
    if (g->data(g->index(r, 0, head)).toString() == "template fragment") fragments = g->index(r, 0, head);
  QVERIFY(fragments.isValid());
  QCOMPARE(g->data(g->index(fragments.row(), KeyGroupModel::kEntries, head)).toString(), QString("2"));
  // Double-click: the table lists that group's keys, with its glob as the filter.
  const QRect rect = b->groupsView()->visualRect(fragments);
  QVERIFY(rect.isValid());
  // A view takes a double-click on the item its press was on: press, then double-click.
  QTest::mouseClick(b->groupsView()->viewport(), Qt::LeftButton, {}, rect.center());
  QTest::mouseDClick(b->groupsView()->viewport(), Qt::LeftButton, {}, rect.center());
  QCOMPARE(b->views()->currentWidget(), static_cast<QWidget*>(b->table()));
  QCOMPARE(QString::fromStdString(b->currentGlob()), QString(":1:template.cache.*"));
  QVERIFY(WaitUntil([&] { return !b->loader()->running(); }));
  QCOMPARE(b->model()->rowCount(), 2);
  for (int r = 0; r < 2; ++r)
    QVERIFY(b->model()->data(b->model()->index(r, KeyTableModel::kKind)).toString().startsWith("template fragment"));
}

// The demo's start (regioncache-gui --open pages): the region named by the
// alias is selected once the project lists it, and in it a cached page.
void AppTest::opensOnACachedPage() {
  const KindUnderTest kind = AllKinds()[0];
  const QJsonObject pages = kind.django_conf(UniqueName("open-pages"));
  cleanups_.push_back([kind, pages] { kind.cleanup(pages); });
  QVERIFY(fillKinds(pages));
  QJsonObject other;
  QVERIFY(fill(kind, "open-other", &other));
  QTemporaryDir dir;
  QVERIFY(dir.isValid());
  QVERIFY(writeSettings(dir.path(), "open_settings", {{"default", other}, {"pages", pages}}));

  window_ = std::make_unique<MainWindow>();
  window_->discoverShm();  // as the app does at start: the segments' names first
  window_->openWhenListed("pages");
  QSignalSpy source(window_.get(), &MainWindow::sourceDone);
  window_->openDjangoProject({PythonExe(), "open_settings", {dir.path()}});
  QVERIFY(source.wait(60000));
  QVERIFY2(source.last()[0].toBool(), qPrintable(source.last()[1].toString()));
  KeyBrowser* b = window_->browser();
  QVERIFY(b->region() != nullptr);
  QCOMPARE(b->region()->spec().name, QString("pages"));
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && b->table()->selectionModel()->hasSelection(); }));
  const int row = b->table()->selectionModel()->selectedRows().first().row();
  QVERIFY2(b->model()->data(b->model()->index(row, KeyTableModel::kKind)).toString().startsWith("cached page"),
           qPrintable(QString::fromStdString(b->model()->entry(row).key)));
}

QTEST_MAIN(AppTest)
#include "app_test.moc"
