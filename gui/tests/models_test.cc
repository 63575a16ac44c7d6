// The models (region list, key table) under QAbstractItemModelTester, fed by
// real regions that Django filled, and the sources of regions: JSON, the
// Django describe helper run as a real child process, /dev/shm discovery.
#include <QAbstractItemModelTester>
#include <QJsonArray>
#include <QJsonDocument>
#include <QTemporaryDir>
#include <QtTest>

#include "django_describer.h"
#include "key_groups.h"
#include "key_table_model.h"
#include "region_list_model.h"
#include "source_ref.h"
#include "test_support.h"

using namespace rcgui;
using namespace rcgui::testing;

class ModelsTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void cleanupTestCase();
  void regionsJsonParses();
  void regionsJsonErrorsNameTheFault();
  void djangoProjectIsDescribed();
  void brokenDjangoProjectIsReported();
  void shmRegionsAreDiscovered();
  void regionListUnderTester_data();
  void regionListUnderTester();
  void keyTableUnderTester_data();
  void keyTableUnderTester();
  void keyKindsAndGroups_data();
  void keyKindsAndGroups();
  void groupGlobsListTheirGroup();
  void deadServerShowsDownWithItsError();
  void recentSourcesRoundTrip();

 private:
  struct Filled {
    KindUnderTest kind;
    QJsonObject conf;
    QJsonArray stored;  // what django_region.py says it stored
  };
  QList<Filled> filled_;
  QTemporaryDir tmp_;
};

void ModelsTest::initTestCase() {
  QVERIFY(tmp_.isValid());
  // The describe helper (a child of the app) imports the regioncache the tests use.
  qputenv("PYTHONPATH", TestPythonPath().toLocal8Bit());
  for (const KindUnderTest& k : AllKinds()) {
    Filled f{k, k.django_conf(UniqueName("models-" + k.kind)), {}};
    QString error;
    QByteArray out = DjangoRegion(f.conf, {"fill"}, &error);
    QVERIFY2(error.isEmpty(), qPrintable(error));
    f.stored = QJsonDocument::fromJson(out).array();
    QCOMPARE(f.stored.size(), 10);
    filled_.push_back(f);
  }
}

void ModelsTest::cleanupTestCase() {
  for (const Filled& f : filled_) f.kind.cleanup(f.conf);
}

void ModelsTest::regionsJsonParses() {
  const QByteArray json = R"({"regions": [
      {"alias": "pages", "kind": "shm", "backend": "regioncache.SharedMemoryCache", "location": "site-pages",
       "options": {"SIZE": "32MB", "CREATE": true, "MAX_ENTRIES": 300}, "key_prefix": "p", "version": 2},
      {"alias": "files", "kind": "file", "location": "/var/cache/site", "options": {}},
      {"alias": "legacy", "kind": "django", "backend": "django.core.cache.backends.locmem.LocMemCache",
       "location": ""}]})";
  QList<RegionSpec> specs;
  QString error;
  QVERIFY2(ParseRegionsJson(json, "test.json", &specs, &error), qPrintable(error));
  QCOMPARE(specs.size(), 3);
  QCOMPARE(specs[0].name, QString("pages"));
  QCOMPARE(specs[0].options["SIZE"], QString("32MB"));
  QCOMPARE(specs[0].options["CREATE"], QString("true"));
  QCOMPARE(specs[0].options["MAX_ENTRIES"], QString("300"));
  QCOMPARE(specs[0].version, 2);
  QCOMPARE(specs[0].origin, QString("test.json"));
  // The app attaches to shared memory, it never creates it.
  regioncache::StoreSpec s = specs[0].ToStoreSpec();
  QCOMPARE(s.options.at("CREATE"), std::string("false"));
  QCOMPARE(s.options.at("SIZE"), std::string("32MB"));
  QCOMPARE(specs[1].ToStoreSpec().options.count("CREATE"), size_t(0));  // other kinds untouched
  // The app's read-only mode opens shared memory read-only (mapped PROT_READ).
  QCOMPARE(specs[0].ToStoreSpec(true).options.at("READ_ONLY"), std::string("true"));
  QCOMPARE(specs[0].ToStoreSpec().options.count("READ_ONLY"), size_t(0));
  QCOMPARE(specs[1].ToStoreSpec(true).options.count("READ_ONLY"), size_t(0));
  QCOMPARE(specs[2].kind, QString("django"));
  // A bare list is accepted too.
  QVERIFY(ParseRegionsJson(R"([{"kind": "shm", "location": "x"}])", "list.json", &specs, &error));
  QCOMPARE(specs[0].name, QString("x"));
}

void ModelsTest::regionsJsonErrorsNameTheFault() {
  QList<RegionSpec> specs;
  QString error;
  QVERIFY(!ParseRegionsJson("{not json", "bad.json", &specs, &error));
  QVERIFY2(error.startsWith("bad.json: not JSON"), qPrintable(error));
  QVERIFY(!ParseRegionsJson(R"({"regions": [{"alias": "a", "kind": "shm"}]})", "r.json", &specs, &error));
  QVERIFY2(error.contains("r.json") && error.contains("(a)") && error.contains("location"), qPrintable(error));
  QVERIFY(!ParseRegionsJson(R"({"other": 1})", "o.json", &specs, &error));
  QVERIFY2(error.contains("o.json"), qPrintable(error));
  RegionSpec manual;
  QVERIFY(!ManualRegion("shm", "r1", "SIZE", &manual, &error));
  QVERIFY2(error.contains("'r1'") && error.contains("SIZE"), qPrintable(error));
  QVERIFY(ManualRegion("shm", "r1", "size=8MB\nMAX_ITEM_SIZE = 1MB", &manual, &error));
  QCOMPARE(manual.options["SIZE"], QString("8MB"));
  QCOMPARE(manual.options["MAX_ITEM_SIZE"], QString("1MB"));
}

void ModelsTest::djangoProjectIsDescribed() {
  // A real settings module in a directory of its own, read by a real Python.
  const Filled& f = filled_.first();
  QFile settings(tmp_.filePath("guiproj_settings.py"));
  QVERIFY(settings.open(QIODevice::WriteOnly));
  settings.write(QString("import json\nSECRET_KEY = 'x'\nUSE_TZ = True\n"
                         "CACHES = {'main': json.loads(%1),\n"
                         "          'local': {'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}}\n")
                     .arg("'" + QString::fromUtf8(QJsonDocument(f.conf).toJson(QJsonDocument::Compact)) + "'")
                     .toUtf8());
  settings.close();
  DjangoDescriber describer;
  QSignalSpy done(&describer, &DjangoDescriber::done);
  describer.Start({PythonExe(), "guiproj_settings", {tmp_.path()}});
  QVERIFY(done.wait(60000));
  QVERIFY2(done[0][0].toBool(), qPrintable(done[0][2].toString()));
  const auto specs = done[0][1].value<QList<RegionSpec>>();
  QCOMPARE(specs.size(), 2);
  QCOMPARE(specs[0].name, QString("main"));
  QCOMPARE(specs[0].kind, f.kind.kind);
  QCOMPARE(specs[0].location, f.conf["LOCATION"].toString());
  QCOMPARE(specs[1].kind, QString("django"));
  // The region the project names opens and shows Django's entries.
  Region r(specs[0]);
  regioncache::Status s;
  auto store = r.acquire(&s);
  QVERIFY2(store, s.ToString().c_str());
  regioncache::Stats stats;
  QVERIFY(store->GetStats(&stats).ok());
  QCOMPARE(stats.entries, uint64_t(10));
  // The foreign backend is listed but not opened, with a reason.
  Region foreign(specs[1]);
  QVERIFY(!foreign.acquire(&s));
  QVERIFY2(s.message().find("LocMemCache") != std::string::npos, s.ToString().c_str());
}

void ModelsTest::brokenDjangoProjectIsReported() {
  DjangoDescriber describer;
  QSignalSpy done(&describer, &DjangoDescriber::done);
  describer.Start({PythonExe(), "no_such_settings_module_xyz", {tmp_.path()}});
  QVERIFY(done.wait(60000));
  QVERIFY(!done[0][0].toBool());
  QVERIFY2(done[0][2].toString().contains("no_such_settings_module_xyz"), qPrintable(done[0][2].toString()));
  describer.Start({"/nonexistent/python3", "x.settings", {}});
  QVERIFY(done.wait(10000));
  QVERIFY(!done[1][0].toBool());
  QVERIFY2(done[1][2].toString().contains("/nonexistent/python3"), qPrintable(done[1][2].toString()));
}

void ModelsTest::shmRegionsAreDiscovered() {
  QList<RegionSpec> specs;
  QString error;
  QVERIFY2(DiscoverShmRegions(&specs, &error), qPrintable(error));
  for (const Filled& f : filled_) {
    if (f.kind.kind != "shm") continue;
    bool found = false;
    for (const RegionSpec& s : specs) {
      if (s.location != f.conf["LOCATION"].toString()) continue;
      found = true;
      // Discovered with no SIZE: the app attaches at whatever size it has.
      Region r(s);
      regioncache::Status st;
      QVERIFY2(r.acquire(&st), st.ToString().c_str());
    }
    QVERIFY(found);
  }
}

void ModelsTest::regionListUnderTester_data() {
  QTest::addColumn<int>("index");
  for (int i = 0; i < filled_.size(); ++i) QTest::newRow(qPrintable(filled_[i].kind.kind)) << i;
}

void ModelsTest::regionListUnderTester() {
  QFETCH(int, index);
  const Filled& f = filled_[index];
  RegionListModel model;
  QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
  RegionSpec good = SpecFromConf("good", f.kind.kind, f.conf);
  RegionSpec missing = SpecFromConf("missing", f.kind.kind, f.kind.absent_conf(UniqueName("absent")));
  RegionSpec foreign;
  foreign.name = "legacy";
  foreign.kind = "django";
  foreign.location = "";
  foreign.backend = "django.core.cache.backends.locmem.LocMemCache";
  QCOMPARE(model.addRegions({good, missing, foreign}), 3);
  QCOMPARE(model.addRegions({good}), 0);  // no duplicates
  QSignalSpy refreshed(&model, &RegionListModel::refreshed);
  model.refresh();
  model.refresh();  // folded into one more pass
  QVERIFY(refreshed.wait(30000));
  QVERIFY(WaitUntil([&] { return refreshed.size() >= 2 && !model.refreshing(); }));
  const RegionRow& row = model.row(0);
  QVERIFY2(row.error.isEmpty(), qPrintable(row.error));
  QCOMPARE(row.stats.entries, uint64_t(10));
  QCOMPARE(model.data(model.index(0, RegionListModel::kEntries)).toULongLong(), 10ull);
  QVERIFY(model.data(model.index(0, RegionListModel::kUsed)).toString().contains(" / "));
  QCOMPARE(model.data(model.index(0, RegionListModel::kKind)).toString(), f.kind.kind);
  QVERIFY(!row.history.empty());
  // The missing region: an error naming it and where it was looked for.
  const QString err = model.row(1).error;
  QVERIFY2(err.contains("missing") && err.contains(missing.location), qPrintable(err));
  QCOMPARE(model.data(model.index(1, RegionListModel::kStatus)).toString(), err);
  QVERIFY2(model.row(2).error.contains("not a regioncache store"), qPrintable(model.row(2).error));
  // A hit through Django moves the hit ratio.
  QString e;
  DjangoRegion(f.conf, {"get", "user:1"}, &e);
  QVERIFY2(e.isEmpty(), qPrintable(e));
  model.removeRegion(2);
  model.removeRegion(1);
  QCOMPARE(model.rowCount(), 1);
  model.refresh();
  QVERIFY(refreshed.wait(30000));
  QVERIFY(model.row(0).stats.hits + model.row(0).stats.misses > 0);
  QVERIFY(model.data(model.index(0, RegionListModel::kHitRatio)).toString().endsWith("%"));
}

void ModelsTest::keyTableUnderTester_data() { regionListUnderTester_data(); }

void ModelsTest::keyTableUnderTester() {
  QFETCH(int, index);
  const Filled& f = filled_[index];
  auto region = std::make_shared<Region>(SpecFromConf("keys", f.kind.kind, f.conf));
  KeyTableModel model;
  QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
  QString error;
  QVERIFY2(ListInto(&model, region, "", &error), qPrintable(error));
  QCOMPARE(model.rowCount(), 10);
  // Every key Django stored, with its size, expiry and encoding.
  for (const auto& v : f.stored) {
    const QJsonObject s = v.toObject();
    int row = -1;
    for (int r = 0; r < model.rowCount(); ++r)
      if (QString::fromStdString(model.entry(r).key) == s["key"].toString()) row = r;
    QVERIFY2(row >= 0, qPrintable(s["key"].toString()));
    const regioncache::EntryInfo& e = model.entry(row);
    QCOMPARE(qint64(e.value_size), qint64(s["size"].toInteger()));
    QCOMPARE(model.data(model.index(row, KeyTableModel::kEncoding)).toString(), s["encoding"].toString());
    if (s["expires"].isNull()) {
      QCOMPARE(e.expires_ms, int64_t(0));
      QCOMPARE(model.data(model.index(row, KeyTableModel::kTimeLeft)).toString(), QString("never"));
      QCOMPARE(model.data(model.index(row, KeyTableModel::kExpires)).toString(), QString("never"));
    } else {
      const double want_ms = s["expires"].toDouble() * 1000;
      QVERIFY2(std::abs(double(e.expires_ms) - want_ms) < 2000,
               qPrintable(QString("%1: %2 vs %3").arg(s["key"].toString()).arg(e.expires_ms).arg(want_ms)));
      QVERIFY(model.data(model.index(row, KeyTableModel::kTimeLeft)).toString().contains(QRegularExpression("^\\d+[smhd]")));
    }
  }
  // The countdown repaint of the visible rows, clamped to the rows there are.
  QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
  model.timePassed(-3, 100);
  QCOMPARE(changed.size(), 1);
  QCOMPARE(changed[0][1].toModelIndex().row(), model.rowCount() - 1);
  // Sorting by size (on a worker), both ways.
  QSignalSpy sorting(&model, &KeyTableModel::sortingChanged);
  model.sort(KeyTableModel::kSize, Qt::AscendingOrder);
  QVERIFY(WaitUntil([&] { return !model.sorting() && sorting.size() >= 2; }));
  for (int r = 1; r < model.rowCount(); ++r) QVERIFY(model.entry(r - 1).value_size <= model.entry(r).value_size);
  model.sort(KeyTableModel::kKey, Qt::DescendingOrder);
  QVERIFY(WaitUntil([&] { return !model.sorting() && sorting.size() >= 4; }));
  for (int r = 1; r < model.rowCount(); ++r) QVERIFY(model.entry(r - 1).key > model.entry(r).key);
  model.sort(KeyTableModel::kExpires, Qt::AscendingOrder);
  QVERIFY(WaitUntil([&] { return !model.sorting() && sorting.size() >= 6; }));
  QCOMPARE(model.entry(model.rowCount() - 1).expires_ms, int64_t(0));  // "never" sorts last
  // A filter by glob lists only what matches.
  model.clear();
  QVERIFY2(ListInto(&model, region, ":1:session:*", &error), qPrintable(error));
  QCOMPARE(model.rowCount(), 2);
  model.removeKeys({":1:session:abc"});
  QCOMPARE(model.rowCount(), 1);
  QCOMPARE(model.entry(0).key, std::string(":1:session:def"));
}

void ModelsTest::keyKindsAndGroups_data() { regionListUnderTester_data(); }

namespace {

// Fills a fresh region of f's kind with one of each key kind through Django
// (gui/tests/support/django_kinds.py); returns what the helper says it made.
QJsonArray FillKinds(const QJsonObject& conf, QString* error) {
  QByteArray out;
  const QString script = QString(REGIONCACHE_SOURCE_DIR) + "/gui/tests/support/django_kinds.py";
  if (!RunPython({script, QString::fromUtf8(QJsonDocument(conf).toJson(QJsonDocument::Compact))}, &out, error))
    return {};
  return QJsonDocument::fromJson(out).array();
}

// What django_kinds.py leaves in the region: 3 pages (two languages and a
// HEAD) and their 3 header lists, 2 fragments, 2 sessions, 3 results of an
// @region function and its generation entry, 2 plain keys.
constexpr int kFilledKeys = 16;

const KeyGroup* Child(const KeyGroup* g, const QString& label) {
  for (const auto& c : g->children)
    if (c->label == label) return c.get();
  return nullptr;
}

}  // namespace

// The kind column and the grouped tree on a region Django filled with pages
// (two languages and a HEAD), their header lists, fragments, both session
// engines, @region functions and plain keys.
void ModelsTest::keyKindsAndGroups() {
  QFETCH(int, index);
  const KindUnderTest& kind = filled_[index].kind;
  const QJsonObject conf = kind.django_conf(UniqueName("kinds-" + kind.kind));
  QString error;
  const QJsonArray made = FillKinds(conf, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  QCOMPARE(made.size(), kFilledKeys);
  auto region = std::make_shared<Region>(SpecFromConf("kinds", kind.kind, conf));
  KeyTableModel model;
  QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
  QVERIFY2(ListInto(&model, region, "", &error), qPrintable(error));
  QCOMPARE(model.rowCount(), kFilledKeys);
  QCOMPARE(model.headerData(KeyTableModel::kKind, Qt::Horizontal).toString(), QString("Kind"));
  const QMap<QString, QString> labels{{"page", "cached page"}, {"page-headers", "page headers"},
                                      {"fragment", "template fragment"}, {"session", "session"},
                                      {"function", "@region function"}, {"plain", "plain"}};
  QMap<QString, uint64_t> bytes_of;  // by kind name, from the table's entries
  for (const auto& v : made) {
    const QJsonObject m = v.toObject();
    int row = -1;
    for (int r = 0; r < model.rowCount(); ++r)
      if (QString::fromStdString(model.entry(r).key) == m["key"].toString()) row = r;
    QVERIFY2(row >= 0, qPrintable(m["key"].toString()));
    const QString text = model.data(model.index(row, KeyTableModel::kKind)).toString();
    QVERIFY2(text.startsWith(labels[m["kind"].toString()]), qPrintable(text + " for " + m["key"].toString()));
    if (m["kind"] == "fragment" || m["kind"] == "function") QVERIFY(text.endsWith(m["name"].toString()));
    const QString tip = model.data(model.index(row, KeyTableModel::kKind), Qt::ToolTipRole).toString();
    QVERIFY(tip.contains("version: 1"));
    if (m["kind"] == "page") {
      QVERIFY2(tip.contains("time zone: Europe/Paris") && tip.contains("language: "), qPrintable(tip));
      QVERIFY(text == "cached page GET" || text == "cached page HEAD");
    }
    bytes_of[m["kind"].toString()] += model.entry(row).value_size;
  }
  // Sorting by kind (on a worker): pages first, plain keys last, keys in order within.
  model.sort(KeyTableModel::kKind, Qt::AscendingOrder);
  QVERIFY(WaitUntil([&] { return !model.sorting(); }));
  QVERIFY(model.data(model.index(0, KeyTableModel::kKind)).toString().startsWith("plain"));
  QVERIFY(model.data(model.index(kFilledKeys - 1, KeyTableModel::kKind)).toString().startsWith("@region function"));
  for (int r = 1; r < model.rowCount(); ++r) {
    const int a = model.data(model.index(r - 1, KeyTableModel::kKind), KeyTableModel::kSortValueRole).toInt();
    const int b = model.data(model.index(r, KeyTableModel::kKind), KeyTableModel::kSortValueRole).toInt();
    QVERIFY(a < b || (a == b && model.entry(r - 1).key < model.entry(r).key));
  }

  // The grouped tree, computed on a worker.
  KeyGroupModel groups(&model);
  QAbstractItemModelTester group_tester(&groups, QAbstractItemModelTester::FailureReportingMode::QtTest);
  QSignalSpy busy(&groups, &KeyGroupModel::busyChanged);
  groups.recompute();
  QVERIFY(groups.busy());
  QVERIFY(WaitUntil([&] { return !groups.busy(); }));
  QCOMPARE(busy.size(), 2);
  const KeyGroup* root = groups.root();
  QCOMPARE(root->entries, uint64_t(kFilledKeys));
  QCOMPARE(groups.rowCount(), 1);  // one KEY_PREFIX and version
  const KeyGroup* head = Child(root, "KEY_PREFIX \"\", version 1");
  QVERIFY(head != nullptr);
  QCOMPARE(head->glob, std::string(":1:*"));
  QCOMPARE(head->children.size(), size_t(6));
  uint64_t total = 0;
  for (auto it = labels.begin(); it != labels.end(); ++it) {
    const KeyGroup* g = Child(head, it.value());
    QVERIFY2(g != nullptr, qPrintable(it.value()));
    QCOMPARE(g->bytes, bytes_of[it.key()]);
    total += g->bytes;
  }
  QCOMPARE(head->bytes, total);
  QCOMPARE(Child(head, "cached page")->entries, uint64_t(3));
  QCOMPARE(Child(head, "page headers")->entries, uint64_t(3));
  QCOMPARE(Child(head, "plain")->entries, uint64_t(2));
  QCOMPARE(Child(head, "plain")->children.size(), size_t(0));
  const KeyGroup* fn = Child(Child(head, "@region function"), "shop.profile");
  QVERIFY(fn != nullptr);
  QCOMPARE(fn->entries, uint64_t(4));  // three results and the generation entry
  QCOMPARE(fn->glob, std::string(":1:shop.profile[(#]*"));
  QCOMPARE(Child(Child(head, "template fragment"), "sidebar")->entries, uint64_t(2));
  QCOMPARE(Child(Child(head, "session"), "cache")->entries, uint64_t(1));
  QCOMPARE(Child(Child(head, "session"), "cached_db")->entries, uint64_t(1));
  QCOMPARE(Child(Child(head, "cached page"), "no key_prefix")->entries, uint64_t(3));
  // Through the model: labels, counts and human sizes.
  const QModelIndex h = groups.index(0, KeyGroupModel::kGroup);
  QCOMPARE(groups.data(groups.index(0, KeyGroupModel::kEntries)).toString(), QString::number(kFilledKeys));
  QCOMPARE(groups.rowCount(h), 6);
  QCOMPARE(groups.parent(groups.index(0, 0, h)), h);

  // Rows removed: the groups follow.
  const std::string plain_key = ":1:greeting";
  model.removeKeys({plain_key});
  groups.recompute();
  QVERIFY(WaitUntil([&] { return !groups.busy(); }));
  QCOMPARE(groups.root()->entries, uint64_t(kFilledKeys - 1));
  QCOMPARE(Child(groups.root()->children[0].get(), "plain")->entries, uint64_t(1));
  kind.cleanup(conf);
}

// Each group's glob, given to the store, lists exactly that group's keys.
void ModelsTest::groupGlobsListTheirGroup() {
  const KindUnderTest& kind = filled_[0].kind;
  const QJsonObject conf = kind.django_conf(UniqueName("globs"));
  QString error;
  QCOMPARE(FillKinds(conf, &error).size(), kFilledKeys);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  auto region = std::make_shared<Region>(SpecFromConf("globs", kind.kind, conf));
  KeyTableModel all;
  QVERIFY2(ListInto(&all, region, "", &error), qPrintable(error));
  auto tree = GroupKeys(all.snapshot());
  std::function<void(const KeyGroup*)> check = [&](const KeyGroup* g) {
    if (!g->glob.empty()) {
      KeyTableModel some;
      QVERIFY2(ListInto(&some, region, QString::fromStdString(g->glob), &error), qPrintable(error));
      QVERIFY2(uint64_t(some.rowCount()) == g->entries,
               qPrintable(QString("%1: %2 keys match %3, the group has %4")
                              .arg(g->label).arg(some.rowCount()).arg(QString::fromStdString(g->glob)).arg(g->entries)));
    }
    for (const auto& c : g->children) check(c.get());
  };
  check(tree.get());
  QCOMPARE(tree->entries, uint64_t(kFilledKeys));
  kind.cleanup(conf);
}

void ModelsTest::deadServerShowsDownWithItsError() {
  // A memcached region over the filled server and a port nobody listens on:
  // the row keeps the figures of the server up, and the typed health (no
  // text parsed) names the dead one with its error.
  const Filled* mc = nullptr;
  for (const Filled& f : filled_)
    if (f.kind.kind == "memcached") mc = &f;
  QVERIFY(mc != nullptr);
  const QString live = mc->conf["LOCATION"].toString();
  QJsonObject conf = mc->kind.absent_conf(UniqueName("dead"));
  const QString dead = conf["LOCATION"].toString();
  conf["LOCATION"] = live + ";" + dead;
  RegionListModel model;
  QCOMPARE(model.addRegions({SpecFromConf("half", "memcached", conf)}), 1);
  QSignalSpy refreshed(&model, &RegionListModel::refreshed);
  model.refresh();
  QVERIFY(refreshed.wait(30000));
  const RegionRow& row = model.row(0);
  QCOMPARE(row.stats.entries, uint64_t(10));
  QCOMPARE(row.stats.servers.size(), size_t(2));
  const regioncache::ServerHealth& up = row.stats.servers[0];
  const regioncache::ServerHealth& down = row.stats.servers[1];
  QCOMPARE(QString::fromStdString(up.address), live);
  QVERIFY(up.up && up.error.empty());
  QCOMPARE(up.entries, uint64_t(10));
  QCOMPARE(QString::fromStdString(down.address), dead);
  QVERIFY(!down.up);
  QVERIFY2(QString::fromStdString(down.error).contains(dead), down.error.c_str());
  QVERIFY2(row.error.contains("1 of its servers down") && row.error.contains(dead + " down: ") &&
               !row.error.contains(live + " down"),
           qPrintable(row.error));
}

void ModelsTest::recentSourcesRoundTrip() {
  SourceRef d;
  d.type = SourceRef::Type::kDjango;
  d.django = {"/usr/bin/python3", "demo.settings", {"examples/demo_site"}};
  SourceRef back;
  QVERIFY(SourceRef::decode(d.encode(), &back));
  QCOMPARE(back.django.settings, QString("demo.settings"));
  QCOMPARE(back.django.pythonpath, QStringList{"examples/demo_site"});
  QCOMPARE(back.django.python, QString("/usr/bin/python3"));
  SourceRef m;
  m.type = SourceRef::Type::kManual;
  QString error;
  QVERIFY(ManualRegion("shm", "abc", "SIZE=8MB", &m.manual, &error));
  QVERIFY(SourceRef::decode(m.encode(), &back));
  QCOMPARE(back.manual.Identity(), QString("shm:abc"));
  QCOMPARE(back.manual.options["SIZE"], QString("8MB"));
  QVERIFY(!SourceRef::decode("{\"type\": \"ftp\"}", &back));
  QVERIFY(!SourceRef::decode("garbage", &back));
}

QTEST_MAIN(ModelsTest)
#include "models_test.moc"
